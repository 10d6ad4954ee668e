"""`appliance firmware pack | sign | verify`: images and signatures for station makers (CONTRACT).

All three work offline on a build machine: nothing here touches a station, a data directory or the network.
Exit codes: 0 done / valid, 1 invalid (verify) or the operation failed, 2 usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.firmware import image, signing

if TYPE_CHECKING:
    from appliance.certs.crypto import x509


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="firmware_command", required=True)
    pack = commands.add_parser("pack", help="build a firmware image")
    pack.add_argument("--version", required=True, dest="image_version", help="the firmware version it installs")
    pack.add_argument("--payload", type=Path, help="a file or directory to carry (e.g. the wheels of a release)")
    pack.add_argument("--entry", help="program in the payload a launcher starts from the slot (relative path)")
    pack.add_argument("--out", type=Path, required=True, help="the image file to write")
    pack.set_defaults(usage_parser=pack)
    sign = commands.add_parser("sign", help="print the base64 signature UpdateFirmware carries")
    sign.add_argument("--key", type=Path, required=True, help="the signing key (PEM, RSA or EC, unencrypted)")
    sign.add_argument("file", type=Path)
    sign.set_defaults(usage_parser=sign)
    verify = commands.add_parser("verify", help="check an image's signature and integrity offline")
    verify.add_argument("--cert", type=Path, required=True, help="the signing certificate (PEM)")
    verify.add_argument("--signature", required=True, help="the base64 signature, or @PATH of a file holding it")
    verify.add_argument("file", type=Path)
    verify.set_defaults(usage_parser=verify)


def run(args: argparse.Namespace) -> int:
    try:
        if args.firmware_command == "pack":
            manifest = image.pack(args.image_version, args.out, args.payload, args.entry)
            print(f"{args.out}: firmware {manifest.version}, {len(manifest.files)} file(s)")
            return 0
        if args.firmware_command == "sign":
            print(signing.sign(args.key.read_bytes(), args.file))
            return 0
        return _verify(args)
    except (OSError, ValueError, image.ImageError) as exc:
        print(f"appliance firmware {args.firmware_command}: {exc}", file=sys.stderr)
        return 1


def _verify(args: argparse.Namespace) -> int:
    signature = args.signature
    if signature.startswith("@"):
        signature = Path(signature[1:]).read_text()
    certificate: x509.Certificate = signing.load_chain(args.cert.read_bytes())[0]
    if not signing.verify_signature(certificate, signature, args.file):
        print(f"{args.file}: INVALID signature (not made by the key of {certificate.subject.rfc4514_string()})")
        return 1
    try:
        manifest = image.verify(args.file)
    except image.ImageError as exc:
        print(f"{args.file}: signature valid, but not a sound firmware image: {exc}")
        return 1
    print(f"{args.file}: valid: firmware {manifest.version}, signed by {certificate.subject.rfc4514_string()}")
    return 0

"""`cryptography`, imported when the station first handles a certificate rather than when it starts.

Its Rust bindings and x509 modules cost ~8.5 MB of RSS (a sixth of a station), and a station at security
profile 0, 1 or 2 that is not handling a certificate (installing, deleting, listing, a new factory root, signed
firmware, profile 3's identity) never uses them: TLS needs only PEM (`appliance.certs.pemtext`). So
firmware modules take the modules they need from here, never from `cryptography` itself:

    from appliance.certs.crypto import serialization, x509

For mypy (and readers' editors) the names are the real modules. At run time each is a `Deferred`
(`appliance.util.deferred`), which imports its module on the first attribute read (`x509.load_pem_x509_certificates`,
`x509.Certificate` in an `isinstance`, `exceptions.InvalidSignature` in an `except` clause once something is
raised) and forwards to it from then on. Annotation-only names (the key type
aliases) are imported under `TYPE_CHECKING` where they are used. `tests/test_import_fence.py` checks that a
profile-1 station boots and serves without loading `cryptography`, and loads it for a certificate operation;
`tests/test_import_fence_tls.py` the same for a profile-2 station over TLS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.util.deferred import Deferred

if TYPE_CHECKING:
    from cryptography import exceptions as exceptions
    from cryptography import x509 as x509
    from cryptography.hazmat.primitives import hashes as hashes
    from cryptography.hazmat.primitives import serialization as serialization
    from cryptography.hazmat.primitives.asymmetric import ec as ec
    from cryptography.hazmat.primitives.asymmetric import padding as padding
    from cryptography.hazmat.primitives.asymmetric import rsa as rsa
    from cryptography.hazmat.primitives.asymmetric import utils as utils
else:
    exceptions = Deferred("cryptography.exceptions")
    x509 = Deferred("cryptography.x509")
    hashes = Deferred("cryptography.hazmat.primitives.hashes")
    serialization = Deferred("cryptography.hazmat.primitives.serialization")
    ec = Deferred("cryptography.hazmat.primitives.asymmetric.ec")
    padding = Deferred("cryptography.hazmat.primitives.asymmetric.padding")
    rsa = Deferred("cryptography.hazmat.primitives.asymmetric.rsa")
    utils = Deferred("cryptography.hazmat.primitives.asymmetric.utils")

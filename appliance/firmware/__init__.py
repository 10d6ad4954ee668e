"""Secure firmware update: images, signatures, downloads, installers and the A/B slots they install into.

The modules, each for one job:

* `image`     — the image format (`pack`, its manifest and own integrity check, `unpack`)
* `signing`   — OCPP's signature over the image file and the signing certificate's check against the
                ManufacturerRootCertificates
* `download`  — HTTP, HTTPS and FTP downloads that can neither hang nor fill the disk
* `slots`     — the A/B slots under `data_dir/firmware`, the boot record a launcher reads, trial boots, rollback
* `installers`— `slots` (built in) and `command` (RAUC, SWUpdate, Mender …), chosen by name from a registry
* `update`    — the durable record of one update (stage, requestId, paths, attempts) in the station's database
* `cli`       — `appliance firmware pack | sign | verify`

The OCPP side (UpdateFirmware, FirmwareStatusNotification) is `appliance/blocks/firmware.py`.
"""

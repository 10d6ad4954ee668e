"""The serial backend (`[hardware] backend = "serial"`): real devices on serial ports.

An RFID reader (reader.py), Modbus RTU energy meters (registers.py maps, modbus.py buses, meters.py polling
and plausibility), a charge controller board (line_protocol.py, controller.py), composed by backend.py; the
config keys in settings.py. Importing this package loads none of the drivers: the registry imports
`backend` only when the config asks for it.
"""

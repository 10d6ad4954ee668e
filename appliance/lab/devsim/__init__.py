"""Device simulators for benches without hardware (`appliance devsim …`): an RFID reader, a charge controller
board and Modbus energy meters on ptys or socket:// loopbacks, sharing one simulated world (bench.py)."""

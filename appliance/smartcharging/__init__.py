"""Smart charging without I/O: charging profiles as data, their validation, and the composite schedule.

Nothing here touches a socket, a clock or a disk: every function takes `now` and the facts it needs (the EVSE's
phases and voltage, its transaction), so the arithmetic can be tested alone (tests/smartcharging) and the block
(`appliance/blocks/smart_charging.py`) only moves data between the CSMS, the storage layer and the hardware.
"""

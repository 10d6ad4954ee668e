"""`appliance demo`: the whole story on one machine, with nothing but the install.

A loopback CSMS (built on the `ocpp` library) and a cable (a TCP proxy we can pull) run in this process; the
station runs as a real child process, exactly as `appliance run` would on a station image, and is driven
through the same `appliance sim` and `appliance-journal` commands a person would type. Every step checks what
the CSMS actually received; the demo exits 0 only if every step behaved.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.lab.csms import LoopbackCsms
from appliance.lab.proxy import ChaosProxy

STATION = "CS001"
PASSWORD = "demo-password-0123"
TOKEN = "04A1B2C3D4"


class DemoFailed(Exception):
    pass


class Demo:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.csms = LoopbackCsms(passwords={STATION: PASSWORD}, heartbeat_interval=5)
        self.proxy: ChaosProxy | None = None
        self.station: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "station.log"
        self.config_path = workdir / "station.toml"
        self.step_no = 0

    # --- narration --------------------------------------------------------------------------------------

    def step(self, text: str) -> None:
        self.step_no += 1
        print(f"\n[{self.step_no:2d}] {text}", flush=True)

    @staticmethod
    def ok(text: str) -> None:
        print(f"     ✔ {text}", flush=True)

    @staticmethod
    def info(text: str) -> None:
        print(f"       {text}", flush=True)

    def wait(self, what: str, predicate: Callable[[], Any], timeout: float = 15) -> Any:
        try:
            return self.csms.wait_for(predicate, timeout, what=what)
        except TimeoutError as exc:
            raise DemoFailed(f"timed out waiting for {what} (see {self.log_path})") from exc

    def events(self) -> list[dict]:
        return self.csms.actions(STATION, "TransactionEvent")

    # --- commands a person would type --------------------------------------------------------------------

    def sim(self, *args: str) -> dict:
        out = subprocess.run(
            [sys.executable, "-m", "appliance", "sim", "--config", str(self.config_path), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if out.returncode != 0:
            raise DemoFailed(f"appliance sim {' '.join(args)} failed: {out.stderr.strip() or out.stdout.strip()}")
        return json.loads(out.stdout)

    def journal(self, *args: str, check: bool = True) -> tuple[int, Any]:
        out = subprocess.run(
            [sys.executable, "-m", "appliance.journal.cli", "--config", str(self.config_path), *args, "--json"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if check and out.returncode != 0:
            raise DemoFailed(f"appliance-journal {' '.join(args)} failed: {out.stderr.strip() or out.stdout}")
        lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
        return out.returncode, lines[0] if len(lines) == 1 else lines

    # --- the story ---------------------------------------------------------------------------------------

    def run(self) -> None:
        self.step("A CSMS on loopback (the `ocpp` library) and a network cable we can pull (a TCP proxy)")
        self.csms.start()
        self.proxy = ChaosProxy("127.0.0.1", self.csms.port).start()
        self.ok(f"CSMS listening at {self.csms.url}; the station connects through 127.0.0.1:{self.proxy.port}")
        self.write_config()

        self.step("The station boots: BootNotification, then the status of each connector")
        self.start_station()
        boot = self.wait("BootNotification", lambda: self.csms.actions(STATION, "BootNotification"))[0]
        self.ok(f"BootNotification reason={boot['reason']} model={boot['chargingStation']['model']} → Accepted")
        statuses = self.wait(
            "StatusNotification ×2",
            lambda: (s := self.csms.actions(STATION, "StatusNotification")) and len(s) >= 2 and s,
        )
        for s in statuses[:2]:
            self.ok(f"StatusNotification EVSE {s['evseId']}: {s['connectorStatus']}")

        self.step("The CSMS reads and changes the device model (GetVariables / SetVariables)")
        answer = self.csms.call(
            STATION,
            "GetVariables",
            {
                "getVariableData": [
                    {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
                    {"component": {"name": "SampledDataCtrlr"}, "variable": {"name": "TxUpdatedInterval"}},
                ]
            },
        )
        for r in answer["getVariableResult"]:
            self.ok(
                f"{r['component']['name']}.{r['variable']['name']} = {r.get('attributeValue')} ({r['attributeStatus']})"
            )
        answer = self.csms.call(
            STATION,
            "SetVariables",
            {
                "setVariableData": [
                    {
                        "component": {"name": "SampledDataCtrlr"},
                        "variable": {"name": "TxUpdatedInterval"},
                        "attributeValue": "2",
                    }
                ]
            },
        )
        self.ok(
            f"SetVariables SampledDataCtrlr.TxUpdatedInterval = 2 → {answer['setVariableResult'][0]['attributeStatus']}"
        )
        self.wait("a Heartbeat", lambda: self.csms.actions(STATION, "Heartbeat"), timeout=10)
        self.ok("Heartbeat received; the station's clock follows the CSMS's currentTime")

        self.step("An EV plugs in on EVSE 1")
        self.sim("plug", "1")
        started = self.wait(
            "TransactionEvent Started", lambda: [e for e in self.events() if e["eventType"] == "Started"]
        )[0]
        tx_id = started["transactionInfo"]["transactionId"]
        self.ok(f"StatusNotification Occupied; TransactionEvent Started ({started['triggerReason']}), tx {tx_id[:8]}…")

        self.step(f"The driver taps RFID card {TOKEN} on EVSE 1")
        self.sim("tap", TOKEN, "--evse", "1")
        self.wait("Authorize", lambda: self.csms.actions(STATION, "Authorize"))
        self.wait(
            "TransactionEvent Authorized", lambda: [e for e in self.events() if e["triggerReason"] == "Authorized"]
        )
        self.ok("Authorize → Accepted; TransactionEvent Updated (Authorized) carries the idToken")

        self.step("The EV charges at 11 kW; meter values arrive every 2 s")
        self.sim("charge", "1", "--watts", "11000")
        self.wait(
            "Charging", lambda: [e for e in self.events() if e["transactionInfo"].get("chargingState") == "Charging"]
        )
        self.wait(
            "two periodic meter values",
            lambda: len([e for e in self.events() if e["triggerReason"] == "MeterValuePeriodic"]) >= 2,
        )
        self.ok(f"charging; energy register {register(self.events()[-1]):.1f} Wh and rising")

        self.step("Someone pulls the network cable (no FIN, no RST: the link just goes silent)")
        before = len(self.events())
        self.proxy.blackhole()
        cut_at = time.monotonic()
        self.wait(
            "the station to notice", lambda: not self.csms.is_connected(STATION) or self._station_offline(), timeout=20
        )
        self.ok(f"the station noticed the dead link after {time.monotonic() - cut_at:.1f} s (WebSocket ping deadline)")
        time.sleep(5)
        _, summary = self.journal("summary")
        self.ok(f"meanwhile the journal holds {summary['pending']} undelivered message(s), written ahead on disk")
        if summary["pending"] < 1:
            raise DemoFailed("no events were journaled while offline")

        self.step("The cable is plugged back in: reconnection and replay in order")
        self.proxy.restore()
        self.wait("the queue to drain", lambda: self._journal_pending() == 0, timeout=30)
        replayed = self.events()[before:]
        offline = [e for e in replayed if e.get("offline")]
        self.ok(
            f"{len(offline)} event(s) produced offline were replayed with offline=true, "
            f"seqNo {offline[0]['seqNo']}…{offline[-1]['seqNo']}"
            if offline
            else "no offline events"
        )
        if not offline:
            raise DemoFailed("expected events flagged offline=true after the outage")
        seqs = [e["seqNo"] for e in self.events() if e["transactionInfo"]["transactionId"] == tx_id]
        if sorted(set(seqs)) != list(range(max(seqs) + 1)):
            raise DemoFailed(f"seqNo not gapless: {seqs}")
        self.ok(f"the CSMS has seqNo 0…{max(seqs)} of the transaction, without gaps")

        self.step("The driver stops with the same card and unplugs")
        self.sim("tap", TOKEN, "--evse", "1")
        ended = self.wait("TransactionEvent Ended", lambda: [e for e in self.events() if e["eventType"] == "Ended"])[0]
        self.sim("unplug", "1")
        self.ok(
            f"TransactionEvent Ended ({ended['triggerReason']}, stoppedReason "
            f"{ended['transactionInfo'].get('stoppedReason', 'Local')}), "
            f"{register(ended) - register(started):.1f} Wh delivered"
        )

        self.step("The station shuts down cleanly (SIGTERM) and the journal is verified")
        code = self.stop_station()
        if code != 0:
            raise DemoFailed(f"station exited {code} on SIGTERM")
        self.ok("station exited 0 after closing the WebSocket with a close frame")
        rc, verdict = self.journal("verify", check=False)
        if rc != 0 or not verdict.get("ok"):
            raise DemoFailed(f"journal verification failed: {verdict}")
        _, summary = self.journal("summary")
        self.ok(
            f"appliance-journal verify: ok — {summary['messages']} messages, {summary['pending']} pending, "
            f"{summary['transactions']['ended']} transaction(s) ended"
        )
        if self.csms.violations:
            raise DemoFailed(f"the CSMS saw OCPP violations: {self.csms.violations}")
        self.ok("the CSMS validated every frame against the official OCPP 2.0.1 schemas: no violation")

    def _station_offline(self) -> bool:
        try:
            status = self.sim("status")
        except DemoFailed:
            return False
        return not status["evses"][0].get("station", {}).get("online", True)

    def _journal_pending(self) -> int:
        _, summary = self.journal("summary")
        return int(summary["pending"])

    # --- plumbing ----------------------------------------------------------------------------------------

    def write_config(self) -> None:
        assert self.proxy is not None
        data = self.workdir / "data"
        variables = {
            "OCPPCommCtrlr.WebSocketPingInterval": 2,
            "OCPPCommCtrlr.MessageTimeout[Default]": 3,
            "OCPPCommCtrlr.RetryBackOffWaitMinimum": 1,
            "OCPPCommCtrlr.RetryBackOffRandomRange": 0,
            "OCPPCommCtrlr.RetryBackOffRepeatTimes": 1,
            "OCPPCommCtrlr.OfflineThreshold": 5,
            "SampledDataCtrlr.TxUpdatedInterval": 10,
        }
        lines = [
            "[station]",
            f'id = "{STATION}"',
            f'data_dir = "{data}"',
            'vendor_name = "Appliance"',
            'model = "AC22-2"',
            'serial_number = "DEMO-0001"',
            'firmware_version = "0.1.0"',
            "[csms]",
            f'url = "ws://127.0.0.1:{self.proxy.port}/ocpp"',
            "security_profile = 1",
            f'basic_auth_password = "{PASSWORD}"',
            "[hardware]",
            'backend = "sim"',
            f'sim_socket = "{data}/sim.sock"',
            "[variables]",
            *[f'"{k}" = {json.dumps(v)}' for k, v in variables.items()],
        ]
        self.config_path.write_text("\n".join(lines) + "\n")

    def start_station(self) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the station process
        self.station = subprocess.Popen(
            [sys.executable, "-m", "appliance", "run", "--config", str(self.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.info(f"station process {self.station.pid}; its log: {self.log_path}")

    def stop_station(self) -> int | None:
        if self.station is None or self.station.poll() is not None:
            return self.station.returncode if self.station else None
        self.station.send_signal(signal.SIGTERM)
        try:
            return self.station.wait(20)
        except subprocess.TimeoutExpired:
            self.station.kill()
            return self.station.wait(5)

    def close(self) -> None:
        self.stop_station()
        if self.proxy is not None:
            self.proxy.stop()
        self.csms.stop()


def register(event: dict) -> float:
    values = [
        s["value"]
        for mv in event.get("meterValue", [])
        for s in mv["sampledValue"]
        if s["measurand"] == "Energy.Active.Import.Register"
    ]
    return float(values[-1]) if values else float("nan")


def run_demo(*, keep: bool = False) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="appliance-demo-", dir="/tmp"))
    print("appliance demo — an OCPP 2.0.1 station, a CSMS, a pulled cable and a replay, all on this machine")
    print(f"working directory: {workdir}")
    demo = Demo(workdir)
    try:
        demo.run()
    except DemoFailed as exc:
        print(f"\n✘ demo failed: {exc}", file=sys.stderr)
        tail = demo.log_path.read_text(errors="replace").splitlines()[-15:] if demo.log_path.exists() else []
        for line in tail:
            print(f"   {line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        demo.close()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\n✔ every step behaved: the demo is done" + (f" (kept {workdir})" if keep else ""))
    return 0

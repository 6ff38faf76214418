from pathlib import Path

from workloads.telemetry import opt_out_of_openvino_telemetry


def test_opt_out_writes_the_vendor_consent_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: tmp_path))
    assert opt_out_of_openvino_telemetry() is True
    consent = tmp_path / "intel" / "openvino_telemetry"
    assert consent.read_text() == "0"
    from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker

    assert OptInChecker().check(enable_opt_in_dialog=False) == ConsentCheckResult.DECLINED


def test_an_explicit_opt_in_is_respected(tmp_path, monkeypatch):
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: tmp_path))
    consent = tmp_path / "intel" / "openvino_telemetry"
    consent.parent.mkdir()
    consent.write_text("1")
    assert opt_out_of_openvino_telemetry() is False
    assert consent.read_text() == "1"

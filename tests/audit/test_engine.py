"""The audit engine: skipped checks, failing checks, findings.json."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import audit
import audit.registry as registry_module
from audit.context import AuditContext
from audit.engine import AuditIncompleteError, audit_context, run_audit, validate_audit_config
from audit.findings import Finding
from audit.registry import CheckSpec, _build
from audit.rundir import FINDINGS, RunDir


@dataclasses.dataclass(frozen=True)
class _Cfg:
    level: str = "info"


def _ok(ctx: AuditContext, config: _Cfg) -> list[Finding]:
    return [Finding(check="ok", severity=config.level, title="fine",  # type: ignore[arg-type]
                    message="nothing to see", evidence={"method": "none"})]


def _crash(ctx: AuditContext, config: _Cfg) -> list[Finding]:
    raise RuntimeError("boom")


@pytest.fixture
def fake_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    specs = _build(
        [
            CheckSpec(name="crash", func=_crash, config_cls=_Cfg),
            CheckSpec(name="ok", func=_ok, config_cls=_Cfg),
            CheckSpec(name="needs_embeddings", func=_ok, config_cls=_Cfg,
                      requires=("embeddings",)),
        ]
    )
    monkeypatch.setattr(registry_module, "registry", lambda: specs)


def _ctx(manifest_for) -> AuditContext:  # type: ignore[no-untyped-def]
    return AuditContext.from_arrays(manifest_for(np.array([0, 1, 0, 1]), ["a", "b"]), ["a", "b"])


@pytest.mark.usefixtures("fake_registry")
def test_crashing_check_is_recorded_and_others_run(manifest_for) -> None:  # type: ignore[no-untyped-def]
    with pytest.warns(UserWarning, match=r"1 check\(s\) failed .*: crash"):
        res = audit_context(_ctx(manifest_for))
    assert [f.check for f in res.findings] == ["crash", "ok"]
    failed = res.findings[0]
    assert failed.severity == "warning" and failed.title == "Check crash could not run"
    assert "RuntimeError: boom" in failed.message
    assert res.errors == [{"check": "crash", "error": "RuntimeError: boom"}]
    assert not res.complete
    with pytest.raises(AuditIncompleteError, match="crash: RuntimeError: boom"):
        res.raise_for_errors()
    with pytest.raises(AuditIncompleteError):
        audit_context(_ctx(manifest_for), strict=True)
    assert res.skipped == [{"check": "needs_embeddings", "reason": "no embeddings"}]
    assert set(res.timings) == {"crash", "ok"}


@pytest.mark.usefixtures("fake_registry")
def test_config_is_applied_and_validated(manifest_for) -> None:  # type: ignore[no-untyped-def]
    res = audit_context(_ctx(manifest_for), checks=["ok"], config={"ok": {"level": "warning"}})
    assert res.findings[0].severity == "warning"
    with pytest.raises(ValueError, match=r"unknown checks \['nope'\]; valid checks: crash, ok"):
        audit_context(_ctx(manifest_for), config={"nope": {}})
    with pytest.raises(ValueError, match=r"no setting\(s\) \['lvl'\]"):
        validate_audit_config({"ok": {"lvl": 1}})
    with pytest.raises(ValueError, match="more than once"):
        validate_audit_config(None, checks=["ok", "ok"])


def test_run_audit_writes_findings_and_lists_skipped(tiny_run: RunDir) -> None:
    findings = run_audit(tiny_run, checks=["label_issues", "annotator_agreement",
                                           "class_balance_and_size"])
    assert findings and all(f.check == "class_balance_and_size" for f in findings)
    on_disk = json.loads(tiny_run.file(FINDINGS).read_text())
    assert [Finding.from_dict(d) for d in on_disk] == findings
    info = tiny_run.read_run_json()["audit"]
    skipped = {s["check"]: s["reason"] for s in info["skipped"]}
    assert skipped == {"label_issues": "no pred_probs",
                       "annotator_agreement": "no manifest column starting with 'label_'"}
    assert info["checks_run"] == ["class_balance_and_size"]
    assert info["errors"] == []
    assert info["config"]["class_balance_and_size"]["warn_half_width"] == 0.10


def test_run_audit_with_predictions(tiny_run: RunDir) -> None:
    n = tiny_run.n_samples()
    y = tiny_run.read_manifest()["label"].to_numpy()
    p = np.where(y[:, None] == np.arange(2), 0.9, 0.1).astype(np.float32)
    tiny_run.write_array("oof/pred_probs", p)
    findings = audit.run_audit(tiny_run, checks=["label_issues"],
                               config={"label_issues": {"n_boot": 50}})
    assert {f.check for f in findings} == {"label_issues"}
    main = [f for f in findings if f.title.startswith("Estimated label noise")]
    assert main[0].severity == "pass"
    assert n == len(y)


def test_public_api_is_light() -> None:
    import subprocess
    import sys

    code = ("import sys, audit; assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'cleanlab' not in sys.modules, 'cleanlab imported'; print(len(audit.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == len(audit.__all__)
    for name in ("run_audit", "list_checks", "get_check", "audit_context", "AuditContext",
                 "Finding", "RunDir"):
        assert name in audit.__all__

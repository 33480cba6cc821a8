"""The machine a report names (storyedge.bench.host) and the compare note when machines differ."""

from __future__ import annotations

import dataclasses

from bench_testutil import hand_report, hand_result

from storyedge.bench.host import cpu_model, host_info
from storyedge.bench.report import compare_reports, compare_text, markdown_text

EPYC = "AMD EPYC 9R14 96-Core Processor"
XEON = "Intel(R) Xeon(R) Processor"


def test_the_cpu_model_is_read_from_cpuinfo(tmp_path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: {EPYC.replace(' ', '  ')}\n\n"
                    f"processor\t: 1\nmodel name\t: {EPYC}\n")
    assert cpu_model(info) == EPYC  # the first core's, runs of spaces collapsed
    no_name = tmp_path / "arm"
    no_name.write_text("processor\t: 0\nBogoMIPS\t: 50.00\nCPU part\t: 0xd0c\n")
    assert cpu_model(no_name) == cpu_model(tmp_path / "missing")  # the platform's answer, not a part number


def test_the_report_names_the_machine() -> None:
    host = host_info()
    assert host.cpu_count and host.machine and "python" in host.versions
    report = hand_report([hand_result("tf-reference"), hand_result("onnx-fp32")])
    report.host = dataclasses.replace(report.host, processor=XEON)
    assert f"host: linux, {XEON}, 2 CPUs;" in markdown_text(report)


def test_compare_says_when_the_old_report_ran_on_another_machine() -> None:
    old = hand_report([hand_result("tf-reference"), hand_result("onnx-fp32")])
    new = hand_report([hand_result("tf-reference"), hand_result("onnx-fp32")])
    old.host = dataclasses.replace(old.host, processor=EPYC)
    new.host = dataclasses.replace(new.host, processor=XEON)
    compare = compare_reports(old, new, "old/report.json")
    assert compare.other_machine == f"{EPYC}, 2 CPUs"
    assert f"ran on another machine ({EPYC}, 2 CPUs)" in compare_text(compare)
    new.compare = compare
    assert f"ran on another machine ({EPYC}, 2 CPUs)" in markdown_text(new)
    # the same model, or a report that names none (older Linux reports): no note
    for processor in (XEON, ""):
        old.host = dataclasses.replace(old.host, processor=processor)
        same = compare_reports(old, new, "old/report.json")
        assert same.other_machine == "" and "another machine" not in compare_text(same)
    old.host = dataclasses.replace(old.host, processor=XEON, cpu_count=8)
    assert compare_reports(old, new, "old/report.json").other_machine == f"{XEON}, 8 CPUs"

"""The machine record (common/host.py): the CPU's model and vector extensions, read from /proc/cpuinfo."""

from __future__ import annotations

from common.host import cpu

EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 23
model\t\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx avx2 fma f16c sha_ni

processor\t: 1
model name\t: another core, not read
"""

GRAVITON = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes sve
CPU implementer\t: 0x41
"""


def test_the_cpu_record_names_the_model_and_the_extensions_that_decide_kernel_rounding(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(EPYC)
    assert cpu(path) == {"model_name": "AMD EPYC", "family": "23", "model": "1",
                         "vector_extensions": ["avx", "avx2", "fma", "f16c"]}
    path.write_text(GRAVITON)
    assert cpu(path)["vector_extensions"] == ["asimd", "sve"] and cpu(path)["family"] is None
    assert cpu(tmp_path / "absent")["vector_extensions"] == []

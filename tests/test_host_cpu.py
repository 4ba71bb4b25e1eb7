"""Which CPUs effc treats as having bf16 dot products (the choice behind `--matmul-precision medium` on llvm-cpu)."""

from __future__ import annotations

import pytest

from effc.compiler.host_cpu import has_bf16_dot, vector_isa

ZEN3 = "flags\t\t: fpu sse2 avx fma avx2 bmi2 vaes vpclmulqdq"
ZEN4 = "flags\t\t: fpu avx2 avx512f avx512bw avx512_vnni avx512_bf16 vpclmulqdq"
SAPPHIRE_RAPIDS = "flags\t\t: avx2 avx512f amx_bf16 amx_tile amx_int8"
NEOVERSE_V1 = "Features\t: fp asimd evtstrm aes sha2 asimdhp cpuid sve bf16 i8mm"
NEOVERSE_N1 = "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimdhp"


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [(ZEN3, False), (ZEN4, True), (SAPPHIRE_RAPIDS, True), (NEOVERSE_V1, True), (NEOVERSE_N1, False), ("", None)],
)
def test_bf16_dot_products_are_read_from_the_first_cpus_flags(cpuinfo: str, expected: bool | None) -> None:
    lines = ["processor\t: 0", "model name\t: some CPU", *cpuinfo.splitlines(), "processor\t: 1"]
    assert has_bf16_dot(lines) is expected


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        (ZEN3, "avx2"),
        (ZEN4, "avx512"),
        (SAPPHIRE_RAPIDS, "avx512"),
        (NEOVERSE_V1, "sve"),
        (NEOVERSE_N1, "neon"),
        ("", ""),
    ],
)
def test_vector_isa_is_the_widest_the_flags_name(cpuinfo: str, expected: str) -> None:
    assert vector_isa(cpuinfo.splitlines()) == expected


def test_the_host_cpu_table_entry_matches_only_cpus_like_those_it_was_measured_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from effc.passes import hardware

    cases = (("avx512", True, False), ("avx2", False, False), ("avx512", False, True), ("neon", False, True))
    for isa, bf16, expected in cases:
        monkeypatch.setattr(hardware, "vector_isa", lambda isa=isa: isa)
        monkeypatch.setattr(hardware, "has_bf16_dot", lambda bf16=bf16: bf16)
        assert (hardware.host_cpu_mismatch() is not None) is expected, (isa, bf16)
    monkeypatch.setattr(hardware, "has_bf16_dot", lambda: None)  # cpuinfo unreadable: nothing to compare
    assert hardware.host_cpu_mismatch() is None
    assert hardware.host_cpu_mismatch("h100-sxm") is None  # GPUs carry no CPU features

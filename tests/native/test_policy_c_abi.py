

@pytest.mark.slow
def test_control_loop_builds_with_find_package_from_a_cmake_install(control_loop, tiny_pack_dir, tmp_path):
    """The whole vendor path: `cmake --install` of the native build (runtime + policy I/O +
    safety), examples/ configured as a consumer with find_package(vla_edge CONFIG), its
    control_loop run: the same output as the program built against the pip-shipped library."""
    import sys

    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake not installed")
    _cxx()
    build, prefix, consumer = tmp_path / "build", tmp_path / "prefix", tmp_path / "consumer"

    def run(*cmd):
        out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=3000)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        return out

    run(cmake, "-S", REPO, "-B", build, "-DVLA_EDGE_PYTHON=OFF", "-DCMAKE_BUILD_TYPE=Release",
        f"-DPython3_EXECUTABLE={sys.executable}")
    run(cmake, "--build", build, "-j", "2", "--target", "vla_edge", "vla_edge_safety")
    run(cmake, "--install", build, "--prefix", prefix)
    assert (prefix / "include" / "vla_edge_policy.h").is_file()
    run(cmake, "-S", REPO / "examples", "-B", consumer, f"-DCMAKE_PREFIX_PATH={prefix}", "-DCMAKE_BUILD_TYPE=Release")
    run(cmake, "--build", consumer)
    rng = np.random.default_rng()
    _, _, ppm, noise_file, filter_file = _write_inputs(tmp_path, rng)
    args = [str(tiny_pack_dir), str(filter_file), str(ppm), ",".join(map(repr, UR3_HOME)), PROMPT, str(noise_file)]
    installed = run(consumer / "control_loop", *args).stdout
    shipped = run(control_loop, *args).stdout
    strip = lambda text: [line for line in text.splitlines() if not line.startswith("timing")]  # noqa: E731
    assert strip(installed) == strip(shipped)

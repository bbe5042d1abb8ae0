import subprocess

from personify.stack import services
from personify.stack.kafka import KafkaBroker, format_command, server_properties


def test_a_cluster_id_starting_with_a_dash_formats_a_data_directory(base_settings, tmp_path):
    libs = KafkaBroker(base_settings).libs
    config = tmp_path / "server.properties"
    config.write_text(server_properties(1, 2, tmp_path / "data", 1))
    result = subprocess.run(
        format_command(["java", "-cp", f"{libs}/*"], config, "-ZjpVfZ4Qhu9FDgH3dXU1A"),
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cluster.id=-ZjpVfZ4Qhu9FDgH3dXU1A" in (tmp_path / "data/meta.properties").read_text()


def test_status_tells_in_plain_words_what_is_up_and_where(base_settings, capsys):
    assert services.status(base_settings) == 0
    out = capsys.readouterr().out
    for name in ("kafka", "redis", "prometheus"):
        line = next(line for line in out.splitlines() if line.startswith(name))
        assert " up " in f" {line} " and "started by personify" in line
    assert "worker" in out

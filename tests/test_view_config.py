"""The view's settings: who may look (localhost, token, insecure), the YAML file, --bind."""

from __future__ import annotations

import pytest

from core.configio import ConfigError
from edge.view.__main__ import parse_bind
from edge.view.config import TOKEN_ENV, check_access, load_view_config, read_token


def test_bind_forms():
    assert parse_bind("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_bind(":9000") == ("127.0.0.1", 9000)
    assert parse_bind("localhost") == ("localhost", 8080)
    assert parse_bind("[::1]:8081") == ("::1", 8081)
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        parse_bind("host:http")


def test_only_a_loopback_address_serves_without_a_token(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_access(load_view_config(None, {"host": host}), None)
    for host in ("0.0.0.0", "192.168.1.20", "view.site.lan", "::"):
        with pytest.raises(ConfigError, match=f"refusing to serve {host}:8080 without an access token"):
            check_access(load_view_config(None, {"host": host}), None)
    check_access(load_view_config(None, {"host": "0.0.0.0"}), "a-token-long-enough")
    file = tmp_path / "view.yaml"
    file.write_text("host: 0.0.0.0\ninsecure: true\nmax_identities: 50\n")
    cfg = load_view_config(str(file), {"port": 9001, "insecure": None})
    assert (cfg.host, cfg.port, cfg.insecure, cfg.max_identities) == ("0.0.0.0", 9001, True, 50)
    check_access(cfg, None)  # the config says insecure: true


def test_token_sources_and_bad_settings(tmp_path, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "from-the-environment-1234")
    assert read_token(load_view_config(None, {})) == "from-the-environment-1234"
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file-abcdefgh\n")
    assert read_token(load_view_config(None, {"token_file": str(token_file)})) == "from-a-file-abcdefgh"
    token_file.write_text("short\n")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        read_token(load_view_config(None, {"token_file": str(token_file)}))
    with pytest.raises(ConfigError, match="token_file not found"):
        read_token(load_view_config(None, {"token_file": str(tmp_path / "nope")}))
    bad = tmp_path / "bad.yaml"
    bad.write_text("hots: 0.0.0.0\n")
    with pytest.raises(ConfigError, match="hots"):
        load_view_config(str(bad), {})
    with pytest.raises(ConfigError, match="speed"):
        load_view_config(None, {"speed": -1.0})
    with pytest.raises(ConfigError, match="key_file needs server_key"):
        load_view_config(None, {"key_file": "view.key_secret"})


def test_the_page_ships_in_the_package_and_loads_nothing_from_the_internet():
    import re
    from importlib.resources import files

    from conftest import REPO

    static = files("edge.view") / "static"
    names = {"index.html", "app.js", "style.css"}
    assert names <= {p.name for p in static.iterdir()}
    assert '"edge.view" = ["static/*"]' in (REPO / "pyproject.toml").read_text()  # in the wheel too
    for name in names:
        text = (static / name).read_text()
        assert not re.search(r"(src|href)=\"(https?:)?//|url\((https?:)?//|import .* from \"https?:", text), name

"""The nginx.conf template and its renderer: every placeholder filled, list lines repeated, the
access log free of credentials, and (where nginx is installed) a config nginx itself accepts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deploy import nginx, tls


def layout(tmp_path: Path, **overrides) -> nginx.NginxLayout:
    values = {
        "nodes": ["127.0.0.1:9101", "127.0.0.1:9102", "127.0.0.1:9103"],
        "https_port": 9443,
        "http_port": 9080,
        "certificate": tmp_path / "server.pem",
        "certificate_key": tmp_path / "server.key",
        "static_root": tmp_path / "static",
        "runtime_dir": tmp_path / "nginx",
        "log_dir": tmp_path / "logs",
    }
    values.update(overrides)
    return nginx.NginxLayout(**values)


def directives(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_every_placeholder_is_filled_and_each_node_gets_an_upstream_line(tmp_path):
    text = nginx.render(layout(tmp_path))
    assert not re.search(r"\{\{.*\}\}", "\n".join(directives(text)))
    servers = [line for line in directives(text) if line.startswith("server 127.0.0.1:91")]
    assert servers == [f"server 127.0.0.1:910{i} max_fails=1 fail_timeout=5s;" for i in (1, 2, 3)]
    assert "listen 127.0.0.1:9443 ssl;" in directives(text)
    assert "return 301 https://$host:9443$request_uri;" in directives(text)


def test_the_redirect_names_no_port_on_the_default_https_port(tmp_path):
    text = nginx.render(layout(tmp_path, https_port=443))
    assert "return 301 https://$host$request_uri;" in directives(text)


def test_limit_exemptions_are_one_geo_line_each_and_absent_by_default(tmp_path):
    assert not [line for line in directives(nginx.render(layout(tmp_path))) if line.endswith(" 0;")]
    text = nginx.render(layout(tmp_path, limit_exempt=["127.0.0.0/8", "::1"]))
    assert "127.0.0.0/8 0;" in directives(text) and "::1 0;" in directives(text)


def test_the_body_limit_is_herald_s_request_limit(tmp_path):
    assert "client_max_body_size 4194304;" in directives(nginx.render(layout(tmp_path)))
    assert "client_max_body_size 1024;" in directives(nginx.render(layout(tmp_path, max_request_bytes=1024)))


def test_the_access_log_format_holds_no_query_string_or_credential():
    template = nginx.TEMPLATE.read_text()
    log_format = template.split("log_format herald", 1)[1].split(";", 1)[0]
    assert "$uri" in log_format
    for leak in ("$request_uri", "$request ", "$request\"", "$args", "$query_string", "$arg_", "$http_authorization",
                 "$http_cookie", "$http_referer"):  # fmt: skip
        assert leak not in log_format


def test_an_unknown_placeholder_is_an_error_and_comments_are_left_alone(tmp_path):
    with pytest.raises(ValueError, match="NOPE"):
        nginx.render(layout(tmp_path), template="listen {{ NOPE }};\n")
    assert nginx.render(layout(tmp_path), template="# see {{ NOPE }}\n") == "# see {{ NOPE }}\n"


def test_an_upstream_needs_a_node(tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        nginx.render(layout(tmp_path, nodes=[]))


@pytest.mark.skipif(nginx.find_nginx() is None, reason="nginx is not installed (scripts/system-packages)")
@pytest.mark.timeout(60)
def test_nginx_accepts_the_rendered_config_with_a_generated_certificate(tmp_path):
    certificates = tls.ensure_certificates(tmp_path / "tls")
    conf = nginx.write(
        layout(tmp_path, certificate=certificates.certificate, certificate_key=certificates.key),
        tmp_path / "nginx.conf",
    )
    nginx.check(nginx.find_nginx() or "nginx", conf, tmp_path / "nginx")


@pytest.mark.timeout(60)
def test_certificates_are_kept_while_valid_and_remade_for_other_names(tmp_path):
    first = tls.ensure_certificates(tmp_path)
    made = first.certificate.read_bytes()
    assert tls.ensure_certificates(tmp_path).certificate.read_bytes() == made
    assert tls.ensure_certificates(tmp_path, hosts=("herald.test",)).certificate.read_bytes() != made
    assert oct(first.key.stat().st_mode & 0o777) == "0o600"


def test_nginx_closes_idle_upstream_connections_before_the_node_does(tmp_path):
    """Otherwise a request sent on a connection the node is closing fails, and nginx does not
    retry a POST: a publish answered 502."""
    from notifications.management.commands.serve import KEEP_ALIVE_SECONDS

    text = nginx.render(layout(tmp_path))
    upstream = text[text.index("upstream herald_nodes {") :]
    upstream = upstream[: upstream.index("\n    }")]
    (timeout,) = [line for line in directives(upstream) if line.startswith("keepalive_timeout")]
    assert timeout == "keepalive_timeout 60s;" and KEEP_ALIVE_SECONDS > 60

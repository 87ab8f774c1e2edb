"""A daemon other machines may reach: CURVE keys, the allow-list, refusals, and clients that hold the keys."""

import re
import socket
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from backend import cli, protocol
from backend.daemon import auth
from backend.client import Client
from backend.image_io import read_image, write_image
from daemon_process import ENGINE_ARGS, REPO, daemon_env, daemon_output, start_daemon, stop_daemon
from helpers import random_image


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keys_cli(capsys, *argv):
    """Run `brushwork keys ...`; return (exit code, stdout + stderr)."""
    code = cli.main(["keys", *argv])
    out, err = capsys.readouterr()
    return code, out + err


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Server keys with 'laptop' allowed; 'stranger' has keys that are not on the allow-list."""
    root = tmp_path_factory.mktemp("keys")
    server_public, server_secret = auth.create_key_pair(root / "server", "server")
    laptop_public, laptop_secret = auth.create_key_pair(root / "laptop", "laptop")
    _, stranger_secret = auth.create_key_pair(root / "stranger", "stranger")
    allowed = root / "server" / "allowed_clients"
    auth.allow_client(laptop_public, allowed)
    return {"server_public": server_public, "server_secret": server_secret, "allowed": allowed,
            "laptop_public": laptop_public, "laptop_secret": laptop_secret, "stranger_secret": stranger_secret}


@pytest.fixture(scope="module")
def secure_daemon(models_dir, keys, tmp_path_factory):
    """`brushwork serve` on loopback TCP with CURVE on; yields (endpoint, process)."""
    tmp = tmp_path_factory.mktemp("secure")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = start_daemon(tmp, endpoint, models_dir, "--server-key", str(keys["server_secret"]),
                        "--allow", str(keys["allowed"]),
                        client_options={"server_key": keys["server_public"], "client_key": keys["laptop_secret"]})
    yield endpoint, proc
    assert stop_daemon(proc) == 0, daemon_output(proc)


def refused_and_logged(proc, endpoint, pattern, **keys):
    """Ping with ``keys``: no reply may come, and the daemon's log must gain a line matching ``pattern``."""
    before = len(daemon_output(proc))
    with Client(endpoint, timeout=1.5, **keys) as client, pytest.raises(protocol.Unavailable) as err:
        client.ping()
    assert err.value.code == "unavailable"
    deadline = time.monotonic() + 10
    while not re.search(pattern, daemon_output(proc)[before:]):
        assert time.monotonic() < deadline, f"no log line like {pattern!r} in:\n{daemon_output(proc)[before:]}"
        time.sleep(0.1)
    return err.value.message


# ---- refusals (these run first, so the once-a-minute refusal log has said nothing yet) -----------

def test_client_without_keys_gets_no_reply_and_the_daemon_logs_it(secure_daemon):
    endpoint, proc = secure_daemon
    message = refused_and_logged(proc, endpoint, r"refused a client connecting to tcp://127\.0\.0\.1:\d+: the "
                                                 r"(client uses no keys|handshake broke off)")
    assert "also needs keys" in message  # the hint for clients without keys


def test_client_with_the_wrong_server_key_gets_no_reply_and_the_daemon_logs_it(secure_daemon, keys):
    endpoint, proc = secure_daemon
    message = refused_and_logged(proc, endpoint, r"refused a client connecting to .*not this daemon's public key",
                                 server_key=keys["laptop_public"], client_key=keys["laptop_secret"])
    assert "allow-list" in message  # the hint for keyed clients


def test_client_not_on_the_allow_list_gets_no_reply_and_the_daemon_logs_its_address_and_key(secure_daemon, keys):
    endpoint, proc = secure_daemon
    stranger = auth.load_public_key(keys["stranger_secret"]).decode()
    refused_and_logged(proc, endpoint, rf"refused a client from 127\.0\.0\.1: unknown key {re.escape(stranger)}",
                       server_key=keys["server_public"], client_key=keys["stranger_secret"])


# ---- the right keys ----------------------------------------------------------------------

def test_the_allowed_client_can_ping_list_models_and_stylize(secure_daemon, keys, models_dir, tmp_path, capsys,
                                                             monkeypatch):
    endpoint, _ = secure_daemon
    with Client(endpoint, timeout=30, server_key=keys["server_public"], client_key=keys["laptop_secret"]) as client:
        assert client.ping() > 0
        assert {"mosaic", "sr_x4"} <= {m["name"] for m in client.info()["models"]}

    monkeypatch.setenv("BRUSHWORK_SERVER_KEY", str(keys["server_public"]))   # the CLI's key options' defaults
    monkeypatch.setenv("BRUSHWORK_CLIENT_KEY", str(keys["laptop_secret"]))
    assert cli.main(["models", "--endpoint", endpoint]) == 0
    out = capsys.readouterr().out
    assert f"daemon at {endpoint}" in out and re.search(r"^mosaic\s+style\s+x1", out, re.M)

    write_image(tmp_path / "in.png", (random_image(24, 32, 3) * 255 + 0.5).astype(np.uint8))
    common = ["stylize", str(tmp_path / "in.png"), "--style", "mosaic", "-q", "-v"]
    assert cli.main([*common, "-o", str(tmp_path / "remote.png"), "--endpoint", endpoint]) == 0
    assert f"using the daemon at {endpoint}" in capsys.readouterr().err
    assert cli.main([*common, "-o", str(tmp_path / "local.png"), "--local", "--models", str(models_dir),
                     *ENGINE_ARGS]) == 0
    remote, _ = read_image(tmp_path / "remote.png")
    local, _ = read_image(tmp_path / "local.png")
    assert remote.shape == (24, 32, 3)
    np.testing.assert_array_equal(remote, local)


def test_cli_with_keys_does_not_fall_back_to_the_local_engine(secure_daemon, keys, tmp_path, capsys):
    endpoint, _ = secure_daemon
    write_image(tmp_path / "in.png", np.zeros((8, 8, 3), np.uint8))
    code = cli.main(["stylize", str(tmp_path / "in.png"), "--style", "mosaic", "-o", str(tmp_path / "out.png"),
                     "--endpoint", endpoint, "--server-key", str(keys["server_public"]),
                     "--client-key", str(keys["stranger_secret"]), "--timeout", "1"])
    assert code == cli.EXIT_ERROR
    assert "no brushwork daemon answering" in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()


def test_both_plugins_reach_the_daemon_with_keys_from_their_settings(secure_daemon, keys, tmp_path):
    from plugin_gimp.installer import install
    from plugin_krita.installer import stage

    endpoint, _ = secure_daemon
    stage(tmp_path / "krita" / "brushwork", recorded_executable=None)
    gimp_folder = install(home=tmp_path / "home", python=[sys.executable]).splitlines()[0]
    key_settings = {"endpoint": endpoint, "manage_daemon": True, "server_key": str(keys["server_public"])}
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(tmp_path / "krita")!r})
        from brushwork import connection, settings
        path = os.path.join({str(tmp_path)!r}, "krita-settings.json")
        settings.save(settings.from_dict(dict({key_settings!r}, client_key={str(keys["laptop_secret"])!r})), path)
        print("krita", sorted(m["name"] for m in connection.Connection(settings.load(path)).client().info()["models"]))

        sys.path.insert(0, {gimp_folder!r})
        import connection, settings, protocol
        config = {str(tmp_path / "gimp-config")!r}
        for client_key in [{str(keys["laptop_secret"])!r}, {str(keys["stranger_secret"])!r}]:
            settings.save(config, dict({key_settings!r}, client_key=client_key))
            try:
                client = connection.connect(settings.load(config), config)
                print("gimp", sorted(m["name"] for m in client.info()["models"]))
            except protocol.Unavailable as e:
                print("gimp refused:", e)
    """)
    done = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    lines = done.stdout.splitlines()
    assert len(lines) == 3, done.stderr
    assert lines[0].startswith("krita [") and "'mosaic'" in lines[0]
    assert lines[1].startswith("gimp [") and "'mosaic'" in lines[1]
    # a refused key never starts a local daemon (manage_daemon is on) but points at the key settings
    assert lines[2].startswith("gimp refused:") and "key files" in lines[2]
    assert not (tmp_path / "gimp-config" / "brushwork-daemon.log").exists()


# ---- listening without keys ----------------------------------------------------------------

def test_serve_on_all_interfaces_without_keys_refuses_before_binding(tmp_path, models_dir):
    port = free_port()
    env = dict(daemon_env(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "no-keys"))
    done = subprocess.run([sys.executable, "-m", "backend.cli", "serve", "--tcp", f"0.0.0.0:{port}",
                           "--models", str(models_dir), *ENGINE_ARGS],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == cli.EXIT_ERROR
    assert f"listening on tcp://0.0.0.0:{port} lets other machines in, so it needs keys" in done.stderr
    assert "brushwork keys server" in done.stderr and "listening on" not in done.stdout
    with socket.socket() as s:  # nothing was bound: the port is still free
        s.bind(("0.0.0.0", port))


def test_serve_with_a_key_but_an_empty_allow_list_refuses(tmp_path, keys, capsys):
    (tmp_path / "empty").mkdir()
    code = cli.main(["serve", "--endpoint", "tcp://0.0.0.0:1", "--server-key", str(keys["server_secret"]),
                     "--allow", str(tmp_path / "empty")])
    assert code == cli.EXIT_ERROR
    assert "holds no client keys" in capsys.readouterr().err


def test_a_secret_key_readable_by_others_is_refused(keys, tmp_path):
    secret = tmp_path / "server.key_secret"
    secret.write_bytes(keys["server_secret"].read_bytes())
    secret.chmod(0o644)
    with pytest.raises(protocol.BrushworkError, match="chmod 600"):
        auth.ServerAuth(secret, keys["allowed"])


def test_client_key_files_are_checked_before_connecting(keys, tmp_path):
    with pytest.raises(protocol.BadRequest, match="come in pairs"):
        Client("tcp://127.0.0.1:1", server_key=keys["server_public"])
    with pytest.raises(protocol.BadRequest, match="only a public key"):
        Client("tcp://127.0.0.1:1", server_key=keys["server_public"], client_key=keys["laptop_public"])
    with pytest.raises(protocol.BadRequest, match="cannot read the server's public key"):
        Client("tcp://127.0.0.1:1", server_key=tmp_path / "missing.key", client_key=keys["laptop_secret"])


# ---- brushwork keys ----------------------------------------------------------------------

def test_keys_command_round_trip(tmp_path, capsys):
    server_dir, client_dir = tmp_path / "server", tmp_path / "client"
    code, out = keys_cli(capsys, "server", "--dir", str(server_dir))
    assert code == 0 and str(server_dir / "server.key") in out and "brushwork keys allow" in out
    code, out = keys_cli(capsys, "client", "laptop", "--dir", str(client_dir))
    assert code == 0 and str(client_dir / "laptop.key_secret") in out
    assert stat.S_IMODE((client_dir / "laptop.key_secret").stat().st_mode) == 0o600
    assert stat.S_IMODE((client_dir / "laptop.key").stat().st_mode) == 0o644
    assert stat.S_IMODE(client_dir.stat().st_mode) == 0o700

    code, out = keys_cli(capsys, "client", "laptop", "--dir", str(client_dir))   # no silent overwrite
    assert code == cli.EXIT_ERROR and "--force" in out
    code, out = keys_cli(capsys, "allow", str(client_dir / "laptop.key_secret"), "--dir", str(server_dir))
    assert code == cli.EXIT_ERROR and "SECRET key file" in out
    code, out = keys_cli(capsys, "allow", str(client_dir / "laptop.key"), "--dir", str(server_dir))
    assert code == 0
    allowed = auth.AllowList(server_dir / "allowed_clients").keys()
    assert allowed == {auth.load_public_key(client_dir / "laptop.key_secret"): "laptop.key"}
    # the keys work together: a ServerAuth accepts them, the client loads them
    server = auth.ServerAuth(server_dir / "server.key_secret", server_dir / "allowed_clients")
    assert server.public_key == auth.load_public_key(server_dir / "server.key")
    Client("tcp://127.0.0.1:1", server_key=server_dir / "server.key", client_key=client_dir / "laptop.key_secret")

    code, out = keys_cli(capsys, "revoke", "laptop", "--dir", str(server_dir))
    assert code == 0 and auth.AllowList(server_dir / "allowed_clients").keys() == {}
    code, out = keys_cli(capsys, "revoke", "laptop", "--dir", str(server_dir))
    assert code == cli.EXIT_ERROR and "no client named 'laptop'" in out


def test_keys_default_to_the_user_config_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert keys_cli(capsys, "server")[0] == 0
    assert (tmp_path / "brushwork" / "keys" / "server.key_secret").is_file()
    assert (tmp_path / "brushwork" / "keys" / "allowed_clients").is_dir()


def test_a_daemon_does_not_take_over_a_socket_another_program_listens_on(tmp_path, models_dir, capsys):
    """A daemon with keys does not answer a key-less ping; binding over its IPC socket would steal it."""
    path = tmp_path / "taken.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen()
        code = cli.main(["serve", "--endpoint", f"ipc://{path}", "--models", str(models_dir), *ENGINE_ARGS])
        assert code == cli.EXIT_ERROR and "another program is listening on" in capsys.readouterr().err
        assert path.exists()

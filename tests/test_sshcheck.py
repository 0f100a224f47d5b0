"""`static`'s ssh check (verify/sshcheck.py) on image trees: no baked private key, client
options where a Secret mounted over /root/.ssh cannot hide them (issue #26)."""

from __future__ import annotations

from pathlib import Path

import pytest

from verify.sshcheck import ssh_check

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
OPTIONS = "Host *\n    StrictHostKeyChecking no\n"


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in {"usr/sbin/sshd": "", "usr/bin/ssh": "",
                       "etc/ssh/ssh_config": "Include /etc/ssh/ssh_config.d/*.conf\n",
                       **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_image_ssh_j2_makes_passes(tmp_path):
    check = ssh_check(tree(tmp_path, {"etc/ssh/ssh_config.d/50-efakit-mpi.conf": OPTIONS}))
    assert check.status == "pass", check.message
    assert "/etc/ssh/ssh_config.d/50-efakit-mpi.conf" in check.message


@pytest.mark.parametrize("name", ["root/.ssh/id_ed25519", "root/.ssh/cluster",
                                  "home/ubuntu/.ssh/id_rsa"])
def test_a_baked_private_key_fails_wherever_it_is(tmp_path, name):
    check = ssh_check(tree(tmp_path, {"etc/ssh/ssh_config.d/50-efakit-mpi.conf": OPTIONS,
                                      name: KEY}))
    assert check.status == "fail" and f"private key baked into the image: /{name}" in check.message


def test_options_only_in_root_ssh_config_fail_because_a_secret_mount_hides_them(tmp_path):
    check = ssh_check(tree(tmp_path, {"root/.ssh/config": OPTIONS}))
    assert check.status == "fail" and "which a mounted Secret hides" in check.message


def test_options_in_a_conf_file_ssh_config_does_not_include_do_not_count(tmp_path):
    check = ssh_check(tree(tmp_path, {"etc/ssh/ssh_config": "Host *\n",
                                      "etc/ssh/ssh_config.d/50-efakit-mpi.conf": OPTIONS}))
    assert check.status == "fail" and "no StrictHostKeyChecking" in check.message


def test_a_public_key_and_no_sshd(tmp_path):
    root = tree(tmp_path, {"etc/ssh/ssh_config.d/x.conf": OPTIONS,
                           "root/.ssh/authorized_keys": "ssh-ed25519 AAAA x\n"})
    (root / "usr/sbin/sshd").unlink()
    check = ssh_check(root)
    assert check.status == "fail" and check.message == "ssh for MPI: missing /usr/sbin/sshd"


def test_host_keys_made_at_start_are_not_a_baked_key(tmp_path):
    """static runs in a started container, whose entrypoint made its host keys."""
    check = ssh_check(tree(tmp_path, {"etc/ssh/ssh_config.d/50-efakit-mpi.conf": OPTIONS,
                                      "etc/ssh/ssh_host_ed25519_key": KEY}))
    assert check.status == "pass", check.message

"""install-plugin over the user's existing GIMP profile, then real GIMP: the procedures must be there.

- ``own``: the user already ran this GIMP (its profile exists). Before the fix the plug-in went
  only into the 3.0 profile, so GIMP 3.2 with its own profile silently had no brushwork.
- ``previous``: only the previous GIMP 3 version's profile exists. The installer puts the plug-in
  there alone (a profile made for this version would stop GIMP from copying the user's settings
  over), and this GIMP copies that profile, plug-in included, on its first start.
"""

import pytest
from gimp_cases import Case
from gimp_harness import install_plugin, run_cases

pytestmark = pytest.mark.gimp

PREVIOUS = {"3.2": "3.0"}   # GIMP version -> the GIMP 3 version whose profile it copies on its first start


@pytest.mark.parametrize("existing", ["own", "previous"])
def test_gimp_finds_the_plugin_installed_into_the_users_profile(gimp_chroot, gimp_version, gimp_daemon,
                                                                gimp_job_dir, existing):
    if existing == "previous" and gimp_version not in PREVIOUS:
        pytest.skip(f"GIMP {gimp_version} has no earlier GIMP 3 profile to copy")
    host, _ = gimp_job_dir
    home = host / f"home-{existing}"
    gimp_config = home / ".config" / "GIMP"
    profile = gimp_config / (gimp_version if existing == "own" else PREVIOUS[gimp_version])
    profile.mkdir(parents=True)
    (profile / "gimprc").write_text("(show-tips no)\n")   # a user's setting
    install_plugin(gimp_chroot, home)
    assert [p.name for p in gimp_config.iterdir()] == [profile.name], "the installer made another profile"
    case = Case("stylize", "U8_NON_LINEAR", "stylize", {"style": "mosaic"}, [(16, 12, True, (0, 0))], (16, 12))
    result = run_cases(gimp_chroot, gimp_job_dir, gimp_daemon, [case.spec], case.inputs(), home=home.name)["stylize"]
    assert result["status"] == "SUCCESS", result
    assert (gimp_config / gimp_version / "plug-ins" / "brushwork" / "brushwork.py").is_file()

import pytest

from supervisor_slapos.slaposcfg import read_slapos_cfg


def write(tmp_path, text):
    path = tmp_path / 'slapos.cfg'
    path.write_text(text)
    return path


def test_read_slapos_cfg_reads_the_keys_the_plugin_uses(tmp_path):
    path = write(
        tmp_path,
        """\
[slapos]
instance_root = /srv/slapgrid
master_url = https://master.example:443/
computer_id = COMP-1234
cert_file = /etc/opt/slapos/ssl/computer.crt
key_file = %(instance_root)s/computer.key
software_root = /opt/slapgrid

[slapformat]
computer_json = /etc/opt/slapos/slapos.xml.json
""",
    )
    config = read_slapos_cfg(path)
    assert config.path == str(path)
    assert config.instance_root == '/srv/slapgrid'
    assert config.master_url == 'https://master.example:443/'
    assert config.computer_id == 'COMP-1234'
    assert config.cert_file == '/etc/opt/slapos/ssl/computer.crt'
    assert config.key_file == '/srv/slapgrid/computer.key'
    assert config.computer_json == '/etc/opt/slapos/slapos.xml.json'


def test_read_slapos_cfg_gives_none_for_missing_or_empty_keys(tmp_path):
    config = read_slapos_cfg(write(tmp_path, '[slapos]\nmaster_url =\n'))
    assert config.master_url is None
    assert config.instance_root is None
    assert config.computer_json is None


@pytest.mark.parametrize(
    'text, message',
    [
        ('not an ini file', 'does not parse'),
        ('[slapos]\nkey_file = %(missing)s\n', 'key_file'),
    ],
)
def test_read_slapos_cfg_refuses_a_broken_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=message) as info:
        read_slapos_cfg(path)
    assert str(path) in str(info.value)


def test_read_slapos_cfg_refuses_a_missing_file(tmp_path):
    with pytest.raises(ValueError, match='cannot read'):
        read_slapos_cfg(tmp_path / 'nowhere.cfg')

"""Tests of paitasks.config: registry settings from services-configuration.yaml."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paitasks.config import CONFIG_FILE_NAME, RegistrySettings, load_settings
from paitasks.errors import ConfigError, PaiTasksError, TreeError

RESOURCES = Path(__file__).parent / "resources" / "config"
PASSWORD = "Pw-Distinctive-7f3a9Q"  # the password in the resource files


def write(tmp_path: Path, text: str, name: str = CONFIG_FILE_NAME) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def registry_yaml(
    *,
    section: str = "docker-registry",
    namespace: str | None = "openpai",
    domain: str | None = "docker.io",
    tag: str | None = "v1",
    username: str | None = None,
    password: str | None = None,
    extra: str = "",
) -> str:
    """A config file whose values are inserted as raw YAML text (quote them yourself)."""
    old = section == "docker-registry-info"
    keys = {
        ("docker-namespace" if old else "namespace"): namespace,
        ("docker-registry-domain" if old else "domain"): domain,
        ("docker-tag" if old else "tag"): tag,
        ("docker-username" if old else "username"): username,
        ("docker-password" if old else "password"): password,
    }
    lines = ["cluster:", f"  {section}:"]
    lines += [f"    {key}: {value}" for key, value in keys.items() if value is not None]
    return "\n".join(lines) + "\n" + extra


def error_of(path: Path | str) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return str(info.value)


# --- the sample files -------------------------------------------------------------------


def test_new_schema_from_folder() -> None:
    folder = RESOURCES / "new"
    s = load_settings(folder)
    assert s == RegistrySettings(
        namespace="openpai",
        domain="docker.io",
        tag="v0.14.0",
        secret_name="pai-secret",
        source=folder / CONFIG_FILE_NAME,
    )
    assert not s.has_login
    assert s.image_name("base-image") == "docker.io/openpai/base-image:v0.14.0"


def test_old_schema_from_folder_given_as_str() -> None:
    s = load_settings(str(RESOURCES / "old"))
    assert (s.namespace, s.domain, s.tag, s.secret_name) == (
        "openpai",
        "registry.example.com",
        "v0.5.0",
        "pai-secret",
    )
    assert s.source == RESOURCES / "old" / CONFIG_FILE_NAME


def test_file_with_any_name() -> None:
    s = load_settings(RESOURCES / "local-registry.yml")
    assert s.source == RESOURCES / "local-registry.yml"
    assert s.image_name("hadoop-run") == "127.0.0.1:5000/team/pai/hadoop-run:dev_build-1.2"
    assert s.repository("hadoop-run") == "127.0.0.1:5000/team/pai/hadoop-run"
    assert s.registry == "127.0.0.1:5000"


def test_public_domain_means_docker_hub() -> None:
    s = load_settings(RESOURCES / "public.yaml")
    assert s.image_name("rest-server") == "openpai/rest-server:latest"
    assert s.repository("rest-server") == "openpai/rest-server"
    assert s.registry == "docker.io"


@pytest.mark.parametrize("name", ["login.yaml", "login-old.yaml"])
def test_login_is_read_and_kept_secret(name: str) -> None:
    s = load_settings(RESOURCES / name)
    assert (s.username, s.password) == ("robot", PASSWORD)
    assert s.has_login
    assert PASSWORD not in repr(s)
    assert PASSWORD not in str(s)
    assert PASSWORD not in f"{s}"
    assert "robot" in repr(s)


def test_login_registry_host_port() -> None:
    s = load_settings(RESOURCES / "login.yaml")
    assert s.registry == "registry.example.com:443"
    assert s.image_name("watchdog") == "registry.example.com:443/openpai/watchdog:v1"


def test_both_schemas_new_one_wins() -> None:
    s = load_settings(RESOURCES / "both-schemas.yaml")
    assert (s.namespace, s.domain, s.tag) == ("new", "new.example.com", "new")


def test_null_new_section_falls_back_to_old(tmp_path: Path) -> None:
    text = registry_yaml(section="docker-registry-info").replace(
        "cluster:\n", "cluster:\n  docker-registry:\n", 1
    )
    s = load_settings(write(tmp_path, text))
    assert (s.namespace, s.tag) == ("openpai", "v1")


def test_int_tag_is_accepted_as_written() -> None:
    assert load_settings(RESOURCES / "int-tag.yaml").tag == "14"


# --- file-level errors ------------------------------------------------------------------


def test_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "x"
    assert error_of(missing) == f"config folder {missing} does not exist"


def test_missing_yaml_file_is_called_a_file(tmp_path: Path) -> None:
    missing = tmp_path / "conf.yaml"
    assert error_of(missing) == f"config file {missing} does not exist"


def test_folder_without_file(tmp_path: Path) -> None:
    assert error_of(tmp_path) == f"{tmp_path / CONFIG_FILE_NAME} not found"


def test_folder_with_yml_instead_of_yaml_gets_a_hint(tmp_path: Path) -> None:
    write(tmp_path, registry_yaml(), "services-configuration.yml")
    message = error_of(tmp_path)
    assert message.startswith(f"{tmp_path / CONFIG_FILE_NAME} not found")
    assert "rename it" in message


def test_unreadable_file_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE_NAME).mkdir()
    message = error_of(tmp_path)
    assert message.startswith(f"cannot read {tmp_path / CONFIG_FILE_NAME}: ")


def test_yaml_syntax_error_names_file_line_and_column() -> None:
    path = RESOURCES / "bad-yaml-indent.yaml"
    message = error_of(path)
    assert message == (
        f"{path}: invalid YAML at line 4, column 12: mapping values are not allowed here"
    )


def test_yaml_error_on_password_line_does_not_leak_it() -> None:
    path = RESOURCES / "bad-yaml-password.yaml"
    message = error_of(path)
    assert PASSWORD not in message
    assert re.fullmatch(
        rf"{re.escape(str(path))}: invalid YAML at line 6, column \d+: "
        r"found unknown escape character 'q' \(while scanning a double-quoted scalar"
        r" started at line 6, column 15\)",
        message,
    )


@pytest.mark.parametrize(
    "value",
    [
        f"*{PASSWORD}",  # undefined alias: PyYAML quotes the alias name
        f"!{PASSWORD} x",  # unknown tag: PyYAML quotes the tag
        f"!!int {PASSWORD}",  # a constructor refuses it and quotes the value
        f"'{PASSWORD}",  # unclosed quote
        f"{PASSWORD}: x",  # mapping value not allowed
        f"[{PASSWORD}",  # unclosed flow sequence
        f"&{PASSWORD} x\n    tag2: *{PASSWORD}x",  # anchor then undefined alias
        f"!<{PASSWORD}> x",  # verbatim tag
        f"!!binary {PASSWORD}",  # bad base64
        f'"{PASSWORD}\\x4"',  # bad escape
    ],
)
def test_yaml_errors_near_the_password_never_quote_it(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, registry_yaml(username="robot", password=value))
    message = error_of(path)
    assert PASSWORD not in message
    assert "\n" not in message
    assert message.startswith(f"{path}: ")


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / CONFIG_FILE_NAME
    path.write_bytes(b"cluster:\n  docker-registry: \xff\xfe\xfa\n")
    assert error_of(path).startswith(f"{path}: not readable as YAML text: ")


def test_control_character(tmp_path: Path) -> None:
    path = write(tmp_path, "cluster:\x07\n")
    assert error_of(path).startswith(f"{path}: not readable as YAML text: ")


def test_several_documents(tmp_path: Path) -> None:
    path = write(tmp_path, registry_yaml() + "---\n" + registry_yaml())
    assert error_of(path).startswith(f"{path}: invalid YAML at line ")


def test_deep_nesting_is_reported_not_crashed(tmp_path: Path) -> None:
    path = write(tmp_path, "[" * 5000 + "]" * 5000)
    assert error_of(path).startswith(f"{path}: ")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    assert error_of(path) == (
        f"{path}: file is empty; expected cluster.docker-registry or cluster.docker-registry-info"
    )


def test_top_level_not_a_mapping() -> None:
    path = RESOURCES / "not-a-mapping.yaml"
    assert error_of(path).startswith(f"{path}: top level must be a mapping, got a list")


def test_no_cluster(tmp_path: Path) -> None:
    path = write(tmp_path, "rest-server:\n  port: 9186\n")
    message = error_of(path)
    assert "no 'cluster' section" in message
    assert "cluster.docker-registry or cluster.docker-registry-info" in message


def test_cluster_not_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "cluster: pai\n")
    assert error_of(path) == f"{path}: 'cluster' must be a mapping, got a str"


def test_no_registry_section() -> None:
    path = RESOURCES / "no-registry.yaml"
    assert error_of(path) == (
        f"{path}: expected cluster.docker-registry or cluster.docker-registry-info"
    )


@pytest.mark.parametrize("section", ["docker-registry", "docker-registry-info"])
def test_registry_section_not_a_mapping(tmp_path: Path, section: str) -> None:
    path = write(tmp_path, f"cluster:\n  {section}: [a, b]\n")
    assert error_of(path) == f"{path}: cluster.{section} must be a mapping, got a list"


# --- key-level errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "field", "key"),
    [
        ("docker-registry", "namespace", "namespace"),
        ("docker-registry", "domain", "domain"),
        ("docker-registry", "tag", "tag"),
        ("docker-registry-info", "namespace", "docker-namespace"),
        ("docker-registry-info", "domain", "docker-registry-domain"),
        ("docker-registry-info", "tag", "docker-tag"),
    ],
)
@pytest.mark.parametrize(("raw", "state"), [(None, "missing"), ('""', "empty"), ("~", "empty")])
def test_missing_or_empty_required_key(
    tmp_path: Path, section: str, field: str, key: str, raw: str | None, state: str
) -> None:
    values: dict[str, Any] = {field: raw}
    path = write(tmp_path, registry_yaml(section=section, **values))
    assert error_of(path) == f"{path}: cluster.{section}.{key} is {state}"


def test_missing_tag_sample() -> None:
    path = RESOURCES / "missing-tag.yaml"
    assert error_of(path) == f"{path}: cluster.docker-registry.tag is missing"


def test_empty_tag_sample() -> None:
    path = RESOURCES / "empty-tag.yaml"
    assert error_of(path) == f"{path}: cluster.docker-registry.tag is empty"


def test_key_of_the_other_schema_gets_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, registry_yaml(namespace=None, extra="    docker-namespace: x\n"))
    message = error_of(path)
    assert message.startswith(f"{path}: cluster.docker-registry.namespace is missing (found")
    assert "'docker-namespace'" in message


@pytest.mark.parametrize(
    ("raw", "kind"),
    [("[v1, v2]", "a list"), ("{a: 1}", "a mapping"), ("!!binary aGVsbG8=", "binary data")],
)
def test_wrong_type_tag(tmp_path: Path, raw: str, kind: str) -> None:
    path = write(tmp_path, registry_yaml(tag=raw))
    assert error_of(path) == f"{path}: cluster.docker-registry.tag must be a string, got {kind}"


@pytest.mark.parametrize("raw", ["true", "yes", "off", "False"])
def test_boolean_is_a_wrong_type(tmp_path: Path, raw: str) -> None:
    path = write(tmp_path, registry_yaml(tag=raw))
    message = error_of(path)
    assert message.startswith(f"{path}: cluster.docker-registry.tag is read by YAML as a boolean")
    assert "quotes" in message


def test_float_tag_must_be_quoted() -> None:
    path = RESOURCES / "float-tag.yaml"
    message = error_of(path)
    assert message == (
        f"{path}: cluster.docker-registry.tag '1.10' is read by YAML as a float,"
        " which changes how it is written; put it in quotes"
    )


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("0123", "an integer"),  # octal in YAML 1.1
        ("0x1F", "an integer"),
        ("1_000", "an integer"),
        ("+5", "an integer"),
        ("1.0", "a float"),
        (".inf", "a float"),
        ("2020-01-01", "a date"),
    ],
)
def test_numbers_that_yaml_would_rewrite_must_be_quoted(
    tmp_path: Path, raw: str, kind: str
) -> None:
    path = write(tmp_path, registry_yaml(tag=raw))
    assert error_of(path) == (
        f"{path}: cluster.docker-registry.tag {raw!r} is read by YAML as {kind},"
        " which changes how it is written; put it in quotes"
    )


@pytest.mark.parametrize(("raw", "tag"), [("14", "14"), ('"1.10"', "1.10"), ("'0123'", "0123")])
def test_plain_ints_and_quoted_numbers_are_kept_as_written(
    tmp_path: Path, raw: str, tag: str
) -> None:
    assert load_settings(write(tmp_path, registry_yaml(tag=raw))).tag == tag


def test_int_namespace_and_password(tmp_path: Path) -> None:
    s = load_settings(
        write(tmp_path, registry_yaml(namespace="42", username="7", password="123456"))
    )
    assert (s.namespace, s.username, s.password) == ("42", "7", "123456")


def test_password_type_errors_do_not_show_it(tmp_path: Path) -> None:
    path = write(tmp_path, registry_yaml(username="u", password="0777123456"))
    message = error_of(path)
    assert "0777123456" not in message
    assert "cluster.docker-registry.password is read by YAML as an integer" in message


def test_username_without_password() -> None:
    path = RESOURCES / "username-only.yaml"
    message = error_of(path)
    assert "cluster.docker-registry.username" in message
    assert "cluster.docker-registry.password" in message
    assert "username is set but password is missing or empty" in message


@pytest.mark.parametrize("section", ["docker-registry", "docker-registry-info"])
def test_password_without_username(tmp_path: Path, section: str) -> None:
    path = write(tmp_path, registry_yaml(section=section, password=PASSWORD))
    message = error_of(path)
    prefix = "docker-" if section == "docker-registry-info" else ""
    assert f"cluster.{section}.{prefix}username" in message
    assert f"cluster.{section}.{prefix}password" in message
    assert PASSWORD not in message


def test_empty_username_and_password_mean_no_login(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, registry_yaml(username='""', password="")))
    assert (s.username, s.password, s.has_login) == (None, None, False)


# --- value validation ---------------------------------------------------------------------

VALID_DOMAINS = [
    "public",
    "docker.io",
    "registry.example.com",
    "registry.example.com:443",
    "127.0.0.1:5000",
    "localhost",
    "localhost:5000",
    "my-registry.local",
    "[::1]:5000",
]
INVALID_DOMAINS = [
    "https://registry.example.com",
    "myregistry",  # docker would read it as a Docker Hub namespace
    "Public",
    "registry.example.com/",
    "registry.example.com/path",
    "-bad.example.com",
    "bad-.example.com",
    "a..b",
    "host:",
    "host:99999",
    "host:0",
    "reg istry.com",
    "ünï.com",
]


@pytest.mark.parametrize("domain", VALID_DOMAINS)
def test_valid_domains(tmp_path: Path, domain: str) -> None:
    s = load_settings(write(tmp_path, registry_yaml(domain=f'"{domain}"')))
    assert s.domain == domain


@pytest.mark.parametrize("domain", INVALID_DOMAINS)
def test_invalid_domains(tmp_path: Path, domain: str) -> None:
    path = write(tmp_path, registry_yaml(domain=f'"{domain}"'))
    assert error_of(path).startswith(f"{path}: cluster.docker-registry.domain {domain!r} ")


@pytest.mark.parametrize(
    "namespace", ["openpai", "team/pai", "a.b", "a_b", "a__b", "a--b", "123", "a/b/c"]
)
def test_valid_namespaces(tmp_path: Path, namespace: str) -> None:
    assert load_settings(write(tmp_path, registry_yaml(namespace=namespace))).namespace == namespace


@pytest.mark.parametrize(
    "namespace", ["OpenPAI", "/pai", "pai/", "a//b", "_a", "a_", "a b", "a...b", "a:b", "é"]
)
def test_invalid_namespaces(tmp_path: Path, namespace: str) -> None:
    path = write(tmp_path, registry_yaml(namespace=f'"{namespace}"'))
    message = error_of(path)
    assert message.startswith(f"{path}: cluster.docker-registry.namespace {namespace!r} ")
    assert "not a docker repository path" in message


@pytest.mark.parametrize("tag", ["v1", "V1.0-rc_2", "_x", "latest", "x" * 128, "0"])
def test_valid_tags(tmp_path: Path, tag: str) -> None:
    assert load_settings(write(tmp_path, registry_yaml(tag=f'"{tag}"'))).tag == tag


@pytest.mark.parametrize("tag", [".x", "-x", "x" * 129, "a b", "v1:2", "tåg", "a/b", "v1@x"])
def test_invalid_tags(tmp_path: Path, tag: str) -> None:
    path = write(tmp_path, registry_yaml(tag=f'"{tag}"'))
    message = error_of(path)
    shown = tag if len(tag) <= 80 else tag[:77] + "..."
    assert message.startswith(f"{path}: cluster.docker-registry.tag {shown!r} ")
    assert "not a docker tag" in message


@pytest.mark.parametrize("field", ["namespace", "domain", "tag"])
def test_invalid_value_messages_hide_the_password(tmp_path: Path, field: str) -> None:
    """Even a value that (by mistake) holds the password is not shown with it."""
    bad = f'"BAD {PASSWORD}"'
    path = write(tmp_path, registry_yaml(username="robot", password=PASSWORD, **{field: bad}))
    message = error_of(path)
    assert PASSWORD not in message
    assert "'BAD ***'" in message


def test_password_folded_into_another_value_is_hidden(tmp_path: Path) -> None:
    """An unclosed quote can make YAML swallow the password line into the tag."""
    text = registry_yaml(tag="'v1", username="robot", password=f"{PASSWORD}'")
    path = write(tmp_path, text)
    message = error_of(path)
    assert message.startswith(
        f"{path}: cluster.docker-registry.tag 'v1 username: robot password: ***' "
    )
    assert PASSWORD not in message


# --- RegistrySettings on its own ----------------------------------------------------------


def test_settings_validate_on_construction() -> None:
    with pytest.raises(ConfigError, match=r"registry domain 'myreg' needs"):
        RegistrySettings(namespace="pai", domain="myreg", tag="v1")
    with pytest.raises(ConfigError, match=r"registry namespace 'PAI' is not"):
        RegistrySettings(namespace="PAI", domain="public", tag="v1")
    with pytest.raises(ConfigError, match=r"registry tag '' is not"):
        RegistrySettings(namespace="pai", domain="public", tag="")


@pytest.mark.parametrize(
    ("username", "password", "expected"),
    [("u", "p", True), ("u", None, False), (None, "p", False), ("", "p", False), ("u", "", False)],
)
def test_has_login(username: str | None, password: str | None, expected: bool) -> None:
    s = RegistrySettings("pai", "public", "v1", username=username, password=password)
    assert s.has_login is expected


def test_repr_never_shows_password() -> None:
    s = RegistrySettings("pai", "docker.io", "v1", username="u", password=PASSWORD)
    assert PASSWORD not in repr(s)
    assert PASSWORD not in str(s)
    assert "password" not in repr(s)


@pytest.mark.parametrize(
    ("domain", "name"),
    [
        ("public", "openpai/base-image:v1"),
        ("docker.io", "docker.io/openpai/base-image:v1"),
        ("127.0.0.1:5000", "127.0.0.1:5000/openpai/base-image:v1"),
        ("localhost", "localhost/openpai/base-image:v1"),
    ],
)
def test_image_name_and_repository(domain: str, name: str) -> None:
    s = RegistrySettings("openpai", domain, "v1")
    assert s.image_name("base-image") == name
    assert s.repository("base-image") == name.removesuffix(":v1")


@pytest.mark.parametrize("image", ["Base", "", "a b", "-x", "x:y"])
def test_invalid_image_name_is_a_tree_error(image: str) -> None:
    with pytest.raises(TreeError, match="not a valid docker repository name"):
        RegistrySettings("openpai", "public", "v1").image_name(image)


def test_too_long_name() -> None:
    s = RegistrySettings("openpai", "docker.io", "v1")
    assert len(s.repository("x" * 237)) == 255
    with pytest.raises(ConfigError, match="longer than docker's 255"):
        s.repository("x" * 238)


# --- properties ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def load_or_config_error(path: Path) -> RegistrySettings | None:
    try:
        return load_settings(path)
    except ConfigError as exc:
        assert "Traceback" not in str(exc)
        assert str(exc)
        return None


YAMLISH_PIECES = [
    "cluster:",
    "docker-registry:",
    "docker-registry-info:",
    "namespace:",
    "domain:",
    "tag:",
    "username:",
    "password:",
    "docker-tag:",
    "secret-name:",
    "\n",
    "\n  ",
    "\n    ",
    " ",
    "\t",
    "-",
    "- ",
    ":",
    "'",
    '"',
    "[",
    "]",
    "{",
    "}",
    ",",
    "&a",
    "*a",
    "!",
    "!!int",
    "!!float",
    "!!binary",
    "!!set",
    "!!python/object",
    "<<",
    "? ",
    "|",
    ">",
    "#",
    "%YAML 1.1\n",
    "---\n",
    "...\n",
    "~",
    "null",
    "yes",
    "1.10",
    "0123",
    "2020-02-30",
    "public",
    "docker.io",
    "127.0.0.1:5000",
    "openpai",
    "v1",
    "\\",
    "\\x",
    "\x00",
    "\ufeff",
    "é",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.lists(st.sampled_from(YAMLISH_PIECES), max_size=60).map(
            lambda parts: "".join(parts).encode("utf-8")
        ),
    )
)
def test_any_bytes_give_settings_or_config_error(scratch: Path, data: bytes) -> None:
    path = scratch / "random.yaml"
    path.write_bytes(data)
    load_or_config_error(path)


PLAIN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
QUOTED_ALPHABET = PLAIN_ALPHABET + "!@$%^&*()+=[]{};,.<>?/|~:# "
JUNK = st.text(alphabet="'\"[]{}:,&*!#|>%@` \t-?\\", min_size=1, max_size=4)
PASSWORD_PREFIXES = ["*", "&", "!", "!!int ", "!!float ", "[", "{", "'", '"', "? ", "%", "@", "`"]
BAD_VALUES = ["[a, b]", "{a: b}", "yes", "1.10", '""', "~", '"Not Valid"', "0x1F", "a b c"]


@st.composite
def broken_config(draw: st.DrawFn) -> tuple[str, str]:
    """A valid file holding a distinctive password, then damaged in 1 to 3 ways."""
    body = draw(st.text(alphabet=PLAIN_ALPHABET, min_size=10, max_size=30))
    password = "Pw" + body
    style = draw(st.sampled_from(["plain", "single", "double"]))
    if style != "plain":
        password = "Pw" + draw(st.text(alphabet=QUOTED_ALPHABET, min_size=10, max_size=30))
    written = {"plain": password, "single": f"'{password}'", "double": f'"{password}"'}[style]
    section = draw(st.sampled_from(["docker-registry", "docker-registry-info"]))
    lines = registry_yaml(section=section, username="robot", password=written).splitlines()
    for _ in range(draw(st.integers(1, 3))):
        damage = draw(
            st.sampled_from(["insert", "before", "delete", "value", "indent", "cut", "dup"])
        )
        text = "\n".join(lines)
        if damage == "before" and written in text:  # junk right before the password value
            at = text.index(written)
            lines = (text[:at] + draw(st.sampled_from(PASSWORD_PREFIXES)) + text[at:]).split("\n")
        elif damage == "insert":  # junk anywhere, the password line included
            at = draw(st.integers(0, len(text)))
            lines = (text[:at] + draw(JUNK) + text[at:]).split("\n")
        elif damage == "cut":  # truncated file
            lines = text[: draw(st.integers(0, len(text)))].split("\n")
        elif lines:
            index = draw(st.integers(0, len(lines) - 1))
            line = lines[index]
            if damage == "delete" and "password" not in line:
                del lines[index]
            elif damage == "value" and "password" not in line and ":" in line:
                key = line.split(":", 1)[0]
                lines[index] = f"{key}: {draw(st.sampled_from(BAD_VALUES))}"
            elif damage == "indent":
                lines[index] = " " * draw(st.integers(1, 6)) + line
            elif damage == "dup":
                lines.insert(index, line)
    return "\n".join(lines) + "\n", password


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(broken_config())
def test_password_never_leaks(scratch: Path, case: tuple[str, str]) -> None:
    text, password = case
    path = scratch / CONFIG_FILE_NAME
    path.write_text(text, encoding="utf-8")
    try:
        s = load_settings(path)
    except ConfigError as exc:
        assert password not in str(exc)
        assert password not in repr(exc)
    else:
        assert password not in repr(s)
        assert password not in str(s)


def test_config_error_is_a_paitasks_error() -> None:
    assert issubclass(ConfigError, PaiTasksError)

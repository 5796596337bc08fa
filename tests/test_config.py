"""Tests of paitasks.config: registry settings from services-configuration.yaml."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paitasks import reference
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
    assert s.host == "127.0.0.1:5000"


def test_public_domain_means_docker_hub() -> None:
    s = load_settings(RESOURCES / "public.yaml")
    assert s.image_name("rest-server") == "openpai/rest-server:latest"
    assert s.repository("rest-server") == "openpai/rest-server"
    assert s.host == "docker.io"


@pytest.mark.parametrize("name", ["login.yaml", "login-old.yaml"])
def test_login_is_read_and_kept_secret(name: str) -> None:
    s = load_settings(RESOURCES / name)
    assert (s.username, s.password) == ("robot", PASSWORD)
    assert PASSWORD not in repr(s)
    assert PASSWORD not in str(s)
    assert PASSWORD not in f"{s}"
    assert "robot" in repr(s)


def test_login_registry_host_port() -> None:
    s = load_settings(RESOURCES / "login.yaml")
    assert s.host == "registry.example.com:443"
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


@pytest.mark.parametrize(("name", "tag"), [("int-tag.yaml", "14"), ("float-tag.yaml", "1.10")])
def test_numbers_are_kept_as_written(name: str, tag: str) -> None:
    assert load_settings(RESOURCES / name).tag == tag


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
    assert error_of(tmp_path) == (
        f"{tmp_path / CONFIG_FILE_NAME} not found"
        " (there is a services-configuration.yml: rename it to .yaml)"
    )


def test_unreadable_file_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE_NAME).mkdir()
    message = error_of(tmp_path)
    assert message.startswith(f"cannot read {tmp_path / CONFIG_FILE_NAME}: ")


def test_yaml_syntax_error_names_file_line_and_column() -> None:
    path = RESOURCES / "bad-yaml-indent.yaml"
    assert error_of(path) == f"{path}:4:12: mapping values are not allowed here"


def test_yaml_error_on_password_line_does_not_leak_it() -> None:
    path = RESOURCES / "bad-yaml-password.yaml"
    message = error_of(path)
    assert PASSWORD not in message
    assert message == f"{path}:6:38: found unknown escape character 'q'"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (f"*{PASSWORD}", "found undefined alias '...'"),
        (f"!{PASSWORD}!x y", "found undefined tag handle '...'"),
        (f"&{PASSWORD} x\n    tag2: *{PASSWORD}x", "found undefined alias '...'"),
        (f"&{PASSWORD} x\n    tag2: &{PASSWORD} y", "second occurrence"),
        (f"'{PASSWORD}", "found unexpected end of stream"),
        (f"{PASSWORD}: x", "mapping values are not allowed here"),
        (f"[{PASSWORD}", "expected ',' or ']', but got '<stream end>'"),
        (f'"{PASSWORD}\\x4"', "expected escape sequence of 2 hexadecimal numbers, but found"),
    ],
)
def test_yaml_errors_near_the_password_never_quote_it(
    tmp_path: Path, value: str, problem: str
) -> None:
    """PyYAML quotes alias, anchor and tag names: quoted text of 2+ characters is hidden."""
    path = write(tmp_path, registry_yaml(username="robot", password=value))
    message = error_of(path)
    assert PASSWORD not in message
    assert "\n" not in message
    assert message.startswith(f"{path}:")
    assert problem in message


@pytest.mark.parametrize(
    ("value", "password"),
    [(f"!{PASSWORD} x", "x"), (f"!!int {PASSWORD}", PASSWORD), (f"!<{PASSWORD}> x", "x")],
)
def test_yaml_tags_are_ignored(tmp_path: Path, value: str, password: str) -> None:
    """BaseLoader builds strings whatever the tag says; none of them is an error."""
    s = load_settings(write(tmp_path, registry_yaml(username="robot", password=value)))
    assert s.password == password


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / CONFIG_FILE_NAME
    path.write_bytes(b"cluster:\n  docker-registry: \xff\xfe\xfa\n")
    assert error_of(path).startswith(f"{path}: not readable as YAML text: ")


def test_control_character(tmp_path: Path) -> None:
    path = write(tmp_path, "cluster:\x07\n")
    assert error_of(path).startswith(f"{path}: not readable as YAML text: ")


def test_several_documents(tmp_path: Path) -> None:
    path = write(tmp_path, registry_yaml() + "---\n" + registry_yaml())
    assert error_of(path) == f"{path}:6:1: but found another document"


def test_deep_nesting_is_reported_not_crashed(tmp_path: Path) -> None:
    path = write(tmp_path, "[" * 5000 + "]" * 5000)
    assert error_of(path) == f"{path}: invalid YAML: nested too deeply"


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n", "~\n"])
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
    assert error_of(path) == (
        f"{path}: no 'cluster' section;"
        " expected cluster.docker-registry or cluster.docker-registry-info"
    )


@pytest.mark.parametrize(("text", "kind"), [("pai", "a string"), ("[a]", "a list")])
def test_cluster_not_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    path = write(tmp_path, f"cluster: {text}\n")
    assert error_of(path) == f"{path}: 'cluster' must be a mapping, got {kind}"


def test_no_registry_section() -> None:
    path = RESOURCES / "no-registry.yaml"
    assert error_of(path) == (
        f"{path}: expected cluster.docker-registry or cluster.docker-registry-info"
    )


@pytest.mark.parametrize("section", ["docker-registry", "docker-registry-info"])
@pytest.mark.parametrize(("text", "kind"), [("[a, b]", "a list"), ('""', "a string")])
def test_registry_section_not_a_mapping(tmp_path: Path, section: str, text: str, kind: str) -> None:
    path = write(tmp_path, f"cluster:\n  {section}: {text}\n")
    assert error_of(path) == f"{path}: cluster.{section} must be a mapping, got {kind}"


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
@pytest.mark.parametrize(
    ("raw", "state"),
    [(None, "missing"), ('""', "empty"), ("~", "empty"), ("null", "empty"), ("", "empty")],
)
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


@pytest.mark.parametrize(
    ("section", "key", "other"),
    [
        ("docker-registry", "namespace", "docker-namespace"),
        ("docker-registry-info", "docker-registry-domain", "domain"),
    ],
)
def test_key_of_the_other_schema_gets_a_hint(
    tmp_path: Path, section: str, key: str, other: str
) -> None:
    field = "namespace" if "namespace" in key else "domain"
    values: dict[str, Any] = {field: None}
    path = write(tmp_path, registry_yaml(section=section, extra=f"    {other}: x\n", **values))
    assert error_of(path) == (
        f"{path}: cluster.{section}.{key} is missing (found '{other}', a key of the other layout)"
    )


@pytest.mark.parametrize(("raw", "kind"), [("[v1, v2]", "a list"), ("{a: 1}", "a mapping")])
@pytest.mark.parametrize("field", ["tag", "username", "password"])
def test_wrong_type(tmp_path: Path, raw: str, kind: str, field: str) -> None:
    values: dict[str, Any] = {"username": "u", "password": "p", field: raw}
    path = write(tmp_path, registry_yaml(**values))
    assert error_of(path) == f"{path}: cluster.docker-registry.{field} must be a string, got {kind}"


@pytest.mark.parametrize(
    ("raw", "tag"),
    [
        ("14", "14"),
        ("1.10", "1.10"),  # a float to SafeLoader: 1.1
        ("0123", "0123"),  # octal in YAML 1.1
        ("0x1F", "0x1F"),
        ("1_000", "1_000"),
        ("1e3", "1e3"),
        ("yes", "yes"),  # booleans to SafeLoader
        ("off", "off"),
        ("False", "False"),
        ("2020-01-01", "2020-01-01"),  # a date to SafeLoader
        ('"1.10"', "1.10"),
        ("'0123'", "0123"),
        ('"null"', "null"),  # quoted: text, not YAML's null
    ],
)
def test_scalars_are_kept_as_written(tmp_path: Path, raw: str, tag: str) -> None:
    assert load_settings(write(tmp_path, registry_yaml(tag=raw))).tag == tag


@given(st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,40}", fullmatch=True))
@settings(max_examples=200, deadline=None)
def test_any_plain_tag_is_kept_as_written(tag: str) -> None:
    """What a plain (unquoted) `tag:` holds is the tag, unless it is YAML's null."""
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder), registry_yaml(tag=tag))
        if tag in ("null", "Null", "NULL"):
            assert error_of(path).endswith("cluster.docker-registry.tag is empty")
        else:
            assert load_settings(path).tag == tag


def test_numeric_namespace_username_and_password(tmp_path: Path) -> None:
    text = registry_yaml(namespace="42", username="7", password="0777123456")
    s = load_settings(write(tmp_path, text))
    assert (s.namespace, s.username, s.password) == ("42", "7", "0777123456")


def test_username_without_password() -> None:
    path = RESOURCES / "username-only.yaml"
    assert error_of(path) == (
        f"{path}: cluster.docker-registry.username and cluster.docker-registry.password"
        " go together: username is set but password is missing or empty"
    )


@pytest.mark.parametrize("section", ["docker-registry", "docker-registry-info"])
def test_password_without_username(tmp_path: Path, section: str) -> None:
    path = write(tmp_path, registry_yaml(section=section, password=PASSWORD))
    message = error_of(path)
    prefix = "docker-" if section == "docker-registry-info" else ""
    assert message == (
        f"{path}: cluster.{section}.{prefix}username and cluster.{section}.{prefix}password"
        f" go together: {prefix}password is set but {prefix}username is missing or empty"
    )


@pytest.mark.parametrize(("username", "password"), [('""', ""), ("~", "null"), ("", "")])
def test_empty_username_and_password_mean_no_login(
    tmp_path: Path, username: str, password: str
) -> None:
    s = load_settings(write(tmp_path, registry_yaml(username=username, password=password)))
    assert (s.username, s.password) == (None, None)


# --- value validation ---------------------------------------------------------------------

VALID_DOMAINS = [
    "public",
    "docker.io",
    "index.docker.io",
    "registry.example.com",
    "registry.example.com:443",
    "127.0.0.1:5000",
    "localhost",
    "localhost:5000",
    "my-registry.local",
    "[::1]:5000",
    "REGISTRY.example.com",
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
    "x" * 250 + ".com",
]


@pytest.mark.parametrize("domain", VALID_DOMAINS)
def test_valid_domains(tmp_path: Path, domain: str) -> None:
    s = load_settings(write(tmp_path, registry_yaml(domain=f'"{domain}"')))
    assert s.domain == domain
    assert reference.parse(s.image_name("base")).path == "openpai/base"


@pytest.mark.parametrize("domain", INVALID_DOMAINS)
def test_invalid_domains(tmp_path: Path, domain: str) -> None:
    path = write(tmp_path, registry_yaml(domain=f'"{domain}"'))
    assert error_of(path).startswith(
        f"{path}: cluster.docker-registry.domain is not a registry host[:port] docker accepts: "
    )


@pytest.mark.parametrize(
    ("domain", "reason"),
    [
        ("https://r.example.com", "write host[:port] alone, without a scheme or a path"),
        ("myregistry", "else docker reads it as a Docker Hub namespace; write 'public'"),
        ("host:0", "the port is outside 1-65535"),
        ("a..b", "invalid reference format"),
    ],
)
def test_invalid_domain_reasons(tmp_path: Path, domain: str, reason: str) -> None:
    assert reason in error_of(write(tmp_path, registry_yaml(domain=f'"{domain}"')))


@pytest.mark.parametrize(
    "namespace", ["openpai", "team/pai", "a.b", "a_b", "a__b", "a--b", "123", "a/b/c"]
)
def test_valid_namespaces(tmp_path: Path, namespace: str) -> None:
    assert load_settings(write(tmp_path, registry_yaml(namespace=namespace))).namespace == namespace


@pytest.mark.parametrize(
    "namespace",
    ["OpenPAI", "/pai", "pai/", "a//b", "_a", "a_", "a b", "a...b", "a:b", "é", "n" * 250],
)
def test_invalid_namespaces(tmp_path: Path, namespace: str) -> None:
    path = write(tmp_path, registry_yaml(namespace=f'"{namespace}"'))
    assert error_of(path).startswith(
        f"{path}: cluster.docker-registry.namespace is not a repository path docker accepts: "
    )


def test_namespace_too_long_with_its_domain(tmp_path: Path) -> None:
    """Each fits alone; together they leave no room for an image name."""
    domain, namespace = "d" * 120 + ".com", "n" * 130
    path = write(tmp_path, registry_yaml(domain=domain, namespace=namespace))
    assert error_of(path) == (
        f"{path}: cluster.docker-registry.namespace is not a repository path docker accepts:"
        " repository name must not be more than 255 characters"
    )


def test_public_namespace_that_looks_like_a_registry(tmp_path: Path) -> None:
    """On Docker Hub, `a.b/x` would be read as the image x of registry a.b."""
    path = write(tmp_path, registry_yaml(domain="public", namespace="a.b"))
    assert error_of(path) == (
        f"{path}: cluster.docker-registry.namespace is not a repository path docker accepts:"
        " docker would split the full name into other parts"
    )


@pytest.mark.parametrize("tag", ["v1", "V1.0-rc_2", "_x", "latest", "x" * 128, "0"])
def test_valid_tags(tmp_path: Path, tag: str) -> None:
    assert load_settings(write(tmp_path, registry_yaml(tag=f'"{tag}"'))).tag == tag


@pytest.mark.parametrize(
    "tag",
    [".x", "-x", "x" * 129, "a b", "v1:2", "tåg", "a/b", "v1@x", "v1@sha256:" + "a" * 64],
)
def test_invalid_tags(tmp_path: Path, tag: str) -> None:
    path = write(tmp_path, registry_yaml(tag=f'"{tag}"'))
    assert error_of(path).startswith(
        f"{path}: cluster.docker-registry.tag is not a tag docker accepts: "
    )


@pytest.mark.parametrize("field", ["namespace", "domain", "tag"])
def test_invalid_value_messages_never_quote_values(tmp_path: Path, field: str) -> None:
    """Even a value that (by mistake) holds the password is not shown."""
    bad = f'"BAD {PASSWORD}"'
    path = write(tmp_path, registry_yaml(username="robot", password=PASSWORD, **{field: bad}))
    message = error_of(path)
    assert PASSWORD not in message
    assert "BAD" not in message


def test_password_folded_into_another_value_is_hidden(tmp_path: Path) -> None:
    """An unclosed quote can make YAML swallow the password line into the tag."""
    text = registry_yaml(tag="'v1", username="robot", password=f"{PASSWORD}'")
    path = write(tmp_path, text)
    message = error_of(path)
    assert message.startswith(f"{path}: cluster.docker-registry.tag is not a tag docker accepts")
    assert PASSWORD not in message


# --- RegistrySettings on its own ----------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "namespace", "tag", "reason"),
    [
        ("myreg", "pai", "v1", "Docker Hub namespace"),
        ("docker.io", "PAI", "v1", "repository name must be lowercase"),
        ("public", "PAI", "v1", "docker would split the full name"),  # PAI/x: registry PAI
        ("public", "pai", "", "invalid reference format"),
    ],
)
def test_hand_made_settings_are_checked_when_naming(
    domain: str, namespace: str, tag: str, reason: str
) -> None:
    s = RegistrySettings(namespace=namespace, domain=domain, tag=tag, source=Path("/c.yaml"))
    with pytest.raises(ConfigError, match=r"^cannot name image 'x' \(settings from /c.yaml\): "):
        s.image_name("x")
    with pytest.raises(ConfigError, match=reason):
        s.repository("x")




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


@pytest.mark.parametrize("image", ["Base", "", "a b", "-x", "x:y", "a/b", "x" * 129])
def test_invalid_image_name_is_a_tree_error(image: str) -> None:
    with pytest.raises(TreeError, match="not a valid docker repository name"):
        RegistrySettings("openpai", "public", "v1").image_name(image)


def test_too_long_name() -> None:
    s = RegistrySettings("n" * 200, "docker.io", "v1")
    assert len(s.repository("x" * 44)) == 255
    with pytest.raises(ConfigError, match="must not be more than 255 characters"):
        s.repository("x" * 45)


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
        ref = reference.parse(s.image_name("base"))  # loaded settings name valid images
        assert (ref.path, ref.tag) == (f"{s.namespace}/base", s.tag)


def test_config_error_is_a_paitasks_error() -> None:
    assert issubclass(ConfigError, PaiTasksError)

"""Turning a parsed TOML document into a :class:`Manifest`."""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

from apscheduler.triggers.cron import CronTrigger

from ..errors import ManifestError
from ._model import (
    _MISSING,
    DEFAULT_INCLUDE,
    DEFAULT_SERVER,
    DEFAULT_SUBSCRIBE_EVERY,
    LOG_FORMATS,
    LOG_LEVELS,
    MAX_CONCURRENCY,
    REQUIRED,
    STATE_DIR_NAME,
    DaemonConfig,
    LazyExprRule,
    Manifest,
    PluginsConfig,
    ServerConfig,
    SettingSpec,
    SubscribeRule,
    TransformSpec,
    UploadRule,
)
from ._values import (
    _ENV_NAME,
    _IDENTIFIER,
    _INTERPOLATION,
    _one_line,
    _remote_path_problem,
    _safe_name_problem,
    _Section,
    _show,
    _url_problem,
)

_TOP_KEYS: Final = ("daemon", "server", "servers", "upload", "subscribe", "lazyexpr", "plugins")
_DAEMON_KEYS: Final = ("state_dir", "log_level", "log_format", "rescan", "retry_max")
_SERVER_KEYS: Final = ("url", "username", "password", "password_file", "timeout", "verify")
_UPLOAD_KEYS: Final = (
    "name",
    "local",
    "remote",
    "server",
    "include",
    "exclude",
    "settle",
    "append",
    "delete",
    "max_delete",
    "follow_symlinks",
    "concurrency",
    "transforms",
)
_SUBSCRIBE_KEYS: Final = (
    "name",
    "root",
    "remote",
    "local",
    "server",
    "every",
    "cron",
    "include",
    "exclude",
    "delete",
    "max_delete",
    "concurrency",
    "transforms",
)
_LAZYEXPR_KEYS: Final = ("name", "expression", "operands", "server", "path", "refresh", "every")
_REFRESH_MODES: Final = ("on-change", "every")


class _Loader:
    """Turns a parsed TOML document into a :class:`Manifest`, failing on the first problem."""

    def __init__(
        self,
        source: str,
        *,
        env: Mapping[str, str],
        plugin_settings: Mapping[str, Mapping[str, SettingSpec]] | None,
        check_paths: bool,
    ) -> None:
        self.source = source
        self.path = Path(source).absolute()
        # The folder is resolved (symlinks, "..") but the file itself is not: relative
        # paths are relative to where the operator sees the manifest.
        self.base_dir = self.path.parent.resolve()
        self.env = env
        self.plugin_settings = plugin_settings
        self.check_paths = check_paths

    def fail(self, key: str, message: str) -> ManifestError:
        return ManifestError(self.source, key, message)

    # -- whole document

    def load(self, document: Mapping[str, Any]) -> Manifest:
        top = _Section(self, document, "")
        top.check_keys(_TOP_KEYS)
        daemon_section = top.subtable("daemon") or _Section(self, {}, "daemon")
        daemon = self.daemon(daemon_section)
        servers = self.servers(top)
        uploads = tuple(
            self.upload(section, servers) for section in self.array_of_tables(top, "upload")
        )
        subscriptions = tuple(
            self.subscribe(section, servers) for section in self.array_of_tables(top, "subscribe")
        )
        lazyexprs = tuple(
            self.lazyexpr(section, servers) for section in self.array_of_tables(top, "lazyexpr")
        )
        # Overlaps first: two rules on the same folder also share a default name, and
        # "overlaps" says more than "duplicate name".
        labelled = self.labelled_rules(uploads, subscriptions)
        self.check_overlaps(labelled)
        self.check_state_dir(daemon.state_dir, labelled)
        self.check_unique_names(uploads, subscriptions, lazyexprs)
        self.check_unique_destinations(lazyexprs)
        plugins = self.plugins(top.subtable("plugins"))
        return Manifest(
            path=self.path,
            source=self.source,
            base_dir=self.base_dir,
            daemon=daemon,
            servers=MappingProxyType(servers),
            uploads=uploads,
            subscriptions=subscriptions,
            lazyexprs=lazyexprs,
            plugins=plugins,
        )

    def array_of_tables(self, top: _Section, name: str) -> list[_Section]:
        value = top.raw(name)
        if value is _MISSING:
            return []
        if not isinstance(value, list):
            raise top.fail(name, f"expected an array of tables ([[{name}]]), got {_show(value)}")
        sections = []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                raise top.index_fail(name, index, f"expected a table, got {_show(item)}")
            sections.append(_Section(self, item, f"{name}[{index}]"))
        return sections

    # -- local paths

    def resolve(self, section: _Section, name: str, text: str) -> Path:
        """``text`` as an absolute resolved path; relative to the manifest's folder."""
        try:
            return (self.base_dir / Path(text).expanduser()).resolve()
        # RuntimeError: symlink loop (3.11) or unknown home; ValueError: a NUL character.
        except (OSError, RuntimeError, ValueError) as exc:
            raise section.fail(name, f"cannot resolve path {_show(text)}: {exc}") from None

    def local_folder(self, section: _Section, *, must_exist: bool) -> tuple[str, Path]:
        """The ``local`` key: text as written and the resolved folder."""
        text = section.required_string("local")
        folder = self.resolve(section, "local", text)
        if self.check_paths:
            if must_exist and not folder.exists():
                raise section.fail("local", f"folder does not exist: {folder}")
            if folder.exists() and not folder.is_dir():
                raise section.fail("local", f"not a folder: {folder}")
        return text, folder

    # -- [daemon]

    def daemon(self, section: _Section) -> DaemonConfig:
        section.check_keys(_DAEMON_KEYS)
        state_text = section.string("state_dir")
        state_dir = (
            self.resolve(section, "state_dir", state_text)
            if state_text is not None
            else self.base_dir / STATE_DIR_NAME
        )
        log_format = section.choice("log_format", LOG_FORMATS, "text")
        return DaemonConfig(
            state_dir=state_dir,
            log_level=section.choice("log_level", LOG_LEVELS, "info"),
            log_format="json" if log_format == "json" else "text",
            rescan=section.required_duration("rescan", 600.0, positive=True),
            retry_max=section.required_duration("retry_max", 300.0, positive=True),
        )

    # -- [server] / [servers.NAME]

    def servers(self, top: _Section) -> dict[str, ServerConfig]:
        if top.has("server") and top.has("servers"):
            raise top.fail(
                "servers", "cannot be combined with [server]; use [servers.default] instead"
            )
        single = top.subtable("server")
        if single is not None:
            return {DEFAULT_SERVER: self.server(single, DEFAULT_SERVER)}
        many = top.subtable("servers")
        if many is None:
            return {DEFAULT_SERVER: ServerConfig(name=DEFAULT_SERVER)}
        if not many.data:
            raise top.fail("servers", "no servers defined (add a [servers.NAME] table)")
        servers = {}
        for name in many.data:
            problem = _safe_name_problem(name)
            if problem is not None:
                raise many.fail(name, problem)
            table = many.subtable(name)
            assert table is not None  # the key exists
            servers[name] = self.server(table, name)
        return servers

    def interpolate(self, section: _Section, name: str, text: str) -> str:
        """Expand ``${VAR}`` from the environment; ``$${`` is a literal ``${``."""

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            variable = match.group(1)
            if variable is None or not _ENV_NAME.fullmatch(variable):
                # The text is not shown: it may be part of a password.
                raise section.fail(
                    name, 'invalid "${...}" reference (write "$${" for a literal "${")'
                )
            if variable not in self.env:
                raise section.fail(name, f"environment variable {variable} is not set")
            return self.env[variable]

        return _INTERPOLATION.sub(replace, text)

    def interpolated(self, section: _Section) -> _Section:
        """A copy of ``section`` with ``${VAR}`` expanded in every string value."""
        data: dict[str, Any] = {}
        for name, value in section.data.items():
            if isinstance(value, str):
                expanded = self.interpolate(section, name, value)
                if value.strip() and not expanded.strip():
                    raise section.fail(name, "is empty after ${...} interpolation")
                value = expanded
            data[name] = value
        return _Section(self, data, section.prefix)

    def server(self, raw_section: _Section, name: str) -> ServerConfig:
        raw_section.check_keys(_SERVER_KEYS)
        section = self.interpolated(raw_section)
        url = section.string("url")
        if url == "embedded":
            url = None
        elif url is not None:
            problem = _url_problem(url, as_written=raw_section.data["url"])
            if problem is not None:
                raise section.fail("url", problem)
        username = section.string("username")
        # Pairing is checked before the password is read: a missing file is a lesser
        # problem than a password that could never be used.
        if section.has("password") and section.has("password_file"):
            raise section.fail("password_file", "give either password or password_file, not both")
        has_password = section.has("password") or section.has("password_file")
        if username is not None and not has_password:
            raise section.fail("username", "needs a password or password_file")
        if username is None and has_password:
            which = "password" if section.has("password") else "password_file"
            raise section.fail(which, "needs a username")
        password, password_file = self.server_password(section)
        return ServerConfig(
            name=name,
            url=url,
            username=username,
            password=password,
            password_file=password_file,
            timeout=section.required_duration("timeout", 30.0, positive=True),
            verify=self.server_verify(section),
        )

    def server_password(self, section: _Section) -> tuple[str | None, Path | None]:
        password = section.string("password", secret=True)
        if password is not None:
            return password, None
        file_text = section.string("password_file")
        if file_text is None:
            return None, None
        password_file = self.resolve(section, "password_file", file_text)
        try:
            content = password_file.read_text(encoding="utf-8")
        except OSError as exc:
            if not self.check_paths:
                return None, password_file  # linting elsewhere: the file lives on the lab PC
            reason = exc.strerror or type(exc).__name__
            raise section.fail("password_file", f"cannot read {password_file}: {reason}") from None
        except UnicodeDecodeError:
            raise section.fail("password_file", f"not UTF-8 text: {password_file}") from None
        password = content.rstrip("\r\n")
        if not password:
            raise section.fail("password_file", f"file is empty: {password_file}")
        return password, password_file

    def server_verify(self, section: _Section) -> bool | str:
        value = section.raw("verify")
        if value is _MISSING:
            return True
        if isinstance(value, bool):
            return value
        if not isinstance(value, str):
            raise section.fail(
                "verify",
                f"expected true, false or a CA bundle file path, got {_show(value)}",
            )
        text = section.string("verify")
        assert text is not None  # the key exists
        bundle = self.resolve(section, "verify", text)
        if self.check_paths and not bundle.is_file():
            raise section.fail("verify", f"CA bundle file not found: {bundle}")
        return str(bundle)

    # -- rules

    def rule_server(self, section: _Section, servers: Mapping[str, ServerConfig]) -> str:
        name = section.string("server") or DEFAULT_SERVER
        if name not in servers:
            defined = ", ".join(sorted(servers))
            raise section.fail("server", f'no server named "{name}" (defined: {defined})')
        return name

    def remote(
        self, section: _Section, name: str, *, required: bool = True, min_segments: int = 1
    ) -> str | None:
        text = section.string(name, required=required)
        if text is None:
            return None
        problem = _remote_path_problem(text, min_segments=min_segments)
        if problem is not None:
            raise section.fail(name, problem)
        return text

    def rule_name(self, section: _Section, default: str) -> str:
        name = section.string("name")
        if name is None:
            return default
        if any(ord(char) < 0x20 for char in name):
            raise section.fail("name", f"must not contain control characters, got {_show(name)}")
        return name

    def transforms(self, section: _Section) -> tuple[TransformSpec, ...]:
        value = section.raw("transforms")
        if value is _MISSING:
            return ()
        if not isinstance(value, list):
            raise section.fail("transforms", f"expected an array of transforms, got {_show(value)}")
        return tuple(self.transform(section, index, item) for index, item in enumerate(value))

    def transform(self, section: _Section, index: int, item: object) -> TransformSpec:
        key = f"{section.key('transforms')}[{index}]"
        if isinstance(item, str):
            if not item.strip():
                raise self.fail(key, "must not be empty")
            return TransformSpec(name=item)
        if not isinstance(item, dict):
            raise self.fail(
                key,
                f'expected a transform name or a table like {{name = "scale"}}, got {_show(item)}',
            )
        inline = _Section(self, item, key)
        name = inline.required_string("name")
        params = {param: param_value for param, param_value in item.items() if param != "name"}
        return TransformSpec(name=name, params=MappingProxyType(params))

    def upload(self, section: _Section, servers: Mapping[str, ServerConfig]) -> UploadRule:
        section.check_keys(_UPLOAD_KEYS)
        local_text, local = self.local_folder(section, must_exist=True)
        remote = self.remote(section, "remote")
        assert remote is not None  # required
        return UploadRule(
            name=self.rule_name(section, f"upload:{local_text}"),
            local=local,
            remote=remote,
            server=self.rule_server(section, servers),
            include=section.string_list("include", DEFAULT_INCLUDE, allow_empty=False),
            exclude=section.string_list("exclude", (), allow_empty=True),
            settle=section.required_duration("settle", 2.0, positive=False),
            append=section.boolean("append", True),
            delete=section.boolean("delete", False),
            max_delete=section.fraction("max_delete", 0.5),
            follow_symlinks=section.boolean("follow_symlinks", False),
            concurrency=section.integer("concurrency", 4, 1, MAX_CONCURRENCY),
            transforms=self.transforms(section),
        )

    def subscribe(self, section: _Section, servers: Mapping[str, ServerConfig]) -> SubscribeRule:
        section.check_keys(_SUBSCRIBE_KEYS)
        if section.has("root") and section.has("remote"):
            raise section.fail("remote", "give either root or remote (an alias), not both")
        remote_key = "remote" if section.has("remote") else "root"
        remote = self.remote(section, remote_key)
        assert remote is not None  # required
        _, local = self.local_folder(section, must_exist=False)
        every, cron = self.schedule(section)
        return SubscribeRule(
            name=self.rule_name(section, f"subscribe:{remote}"),
            remote=remote,
            local=local,
            server=self.rule_server(section, servers),
            every=every,
            cron=cron,
            include=section.string_list("include", DEFAULT_INCLUDE, allow_empty=False),
            exclude=section.string_list("exclude", (), allow_empty=True),
            delete=section.boolean("delete", False),
            max_delete=section.fraction("max_delete", 0.5),
            concurrency=section.integer("concurrency", 8, 1, MAX_CONCURRENCY),
            transforms=self.transforms(section),
        )

    def schedule(self, section: _Section) -> tuple[float | None, str | None]:
        every = section.duration("every", None, positive=True)
        cron = section.string("cron")
        if every is not None and cron is not None:
            raise section.fail("cron", "give either every or cron, not both")
        if cron is None:
            return (every if every is not None else DEFAULT_SUBSCRIBE_EVERY), None
        try:
            # A fixed timezone: validation must not depend on the host's tz database.
            CronTrigger.from_crontab(cron, timezone=_dt.UTC)
        except ValueError as exc:
            message = _one_line(str(exc))
            raise section.fail(
                "cron", f'invalid crontab {_show(cron)} (like "*/5 * * * *"): {message}'
            ) from None
        return None, cron

    def lazyexpr(self, section: _Section, servers: Mapping[str, ServerConfig]) -> LazyExprRule:
        section.check_keys(_LAZYEXPR_KEYS)
        name = section.required_string("name")
        problem = _safe_name_problem(name)
        if problem is not None:
            raise section.fail("name", problem)
        expression = section.required_string("expression")
        operands = self.operands(section, expression)
        server = self.rule_server(section, servers)
        path = self.remote(section, "path", required=False, min_segments=2)
        if path is not None and not path.endswith(".b2nd"):
            raise section.fail(
                "path", f'expected a dataset path ending in ".b2nd", got {_show(path)}'
            )
        refresh, every = self.refresh(section)
        return LazyExprRule(
            name=name,
            expression=expression,
            operands=MappingProxyType(operands),
            server=server,
            path=path,
            refresh=refresh,
            every=every,
        )

    def operands(self, section: _Section, expression: str) -> dict[str, str]:
        table = section.subtable("operands")
        if table is None:
            raise section.fail("operands", "missing required key")
        if not table.data:
            raise section.fail("operands", "must not be empty")
        used = set(_IDENTIFIER.findall(expression))
        operands = {}
        for variable in table.data:
            if not variable.isidentifier() or not variable.isascii():
                raise table.fail(variable, "operand names must be identifiers like raw or dark_1")
            path = self.remote(table, variable, min_segments=2)
            assert path is not None  # the key exists
            if variable not in used:
                raise table.fail(variable, "not used in the expression")
            operands[variable] = path
        return operands

    def refresh(self, section: _Section) -> tuple[Literal["on-change", "every"], float | None]:
        implied = "every" if section.has("every") else "on-change"
        mode = section.choice("refresh", _REFRESH_MODES, implied)
        every = section.duration("every", None, positive=True)
        if mode == "on-change":
            if every is not None:
                raise section.fail("every", 'cannot be combined with refresh = "on-change"')
            return "on-change", None
        if every is None:
            raise section.fail("every", 'missing required key (refresh = "every" needs it)')
        return "every", every

    # -- cross-rule checks

    def check_unique_names(
        self,
        uploads: Sequence[UploadRule],
        subscriptions: Sequence[SubscribeRule],
        lazyexprs: Sequence[LazyExprRule],
    ) -> None:
        # Names key the state store: a duplicate would make two rules share history.
        seen: dict[str, str] = {}
        groups: list[tuple[str, Sequence[UploadRule | SubscribeRule | LazyExprRule]]] = [
            ("upload", uploads),
            ("subscribe", subscriptions),
            ("lazyexpr", lazyexprs),
        ]
        for kind, rules in groups:
            for index, rule in enumerate(rules):
                label = f"{kind}[{index}]"
                if rule.name in seen:
                    raise self.fail(
                        f"{label}.name",
                        f"duplicate rule name {_show(rule.name)} (also used by {seen[rule.name]});"
                        " set a distinct name",
                    )
                seen[rule.name] = label

    def check_unique_destinations(self, lazyexprs: Sequence[LazyExprRule]) -> None:
        seen: dict[tuple[str, str], int] = {}
        for index, rule in enumerate(lazyexprs):
            target = (rule.server, rule.destination)
            if target in seen:
                raise self.fail(
                    f"lazyexpr[{index}].path",
                    f"{rule.destination} is already written by lazyexpr[{seen[target]}]",
                )
            seen[target] = index

    @staticmethod
    def labelled_rules(
        uploads: Sequence[UploadRule], subscriptions: Sequence[SubscribeRule]
    ) -> list[tuple[str, Path]]:
        labelled = [(f"upload[{index}]", rule.local) for index, rule in enumerate(uploads)]
        labelled += [(f"subscribe[{i}]", rule.local) for i, rule in enumerate(subscriptions)]
        return labelled

    def check_overlaps(self, labelled: Sequence[tuple[str, Path]]) -> None:
        # Nested folders would feed one rule's output into another (or into itself).
        for later, (label, folder) in enumerate(labelled):
            for other_label, other in labelled[:later]:
                if folder == other:
                    relation = f"both are {folder}"
                elif folder.is_relative_to(other):
                    relation = f"{other} contains {folder}"
                elif other.is_relative_to(folder):
                    relation = f"{folder} contains {other}"
                else:
                    continue
                raise self.fail(f"{label}.local", f"overlaps {other_label}.local ({relation})")

    def check_state_dir(self, state_dir: Path, labelled: Sequence[tuple[str, Path]]) -> None:
        # The daemon writes its database there: it must never be synced itself.
        for label, folder in labelled:
            if state_dir.is_relative_to(folder):
                raise self.fail(
                    "daemon.state_dir",
                    f"{state_dir} lies inside {label}.local ({folder}); move it elsewhere",
                )
            if folder.is_relative_to(state_dir):
                raise self.fail(f"{label}.local", f"lies inside daemon.state_dir ({state_dir})")

    # -- [plugins]

    def plugins(self, section: _Section | None) -> PluginsConfig:
        if section is None:
            return PluginsConfig(settings=MappingProxyType(self.default_plugin_settings(set())))
        disable = section.string_list("disable", (), allow_empty=True)
        known = self.plugin_settings
        if known is not None:
            for index, name in enumerate(disable):
                if name not in known:
                    raise section.index_fail("disable", index, f"unknown plugin {_show(name)}")
        settings: dict[str, Mapping[str, Any]] = {}
        for name in section.data:
            if name == "disable":
                continue
            table = section.raw(name)
            if not isinstance(table, dict):
                raise section.fail(name, f"expected a table [plugins.{name}], got {_show(table)}")
            if known is None:
                settings[name] = MappingProxyType(dict(table))
            elif name not in known:
                raise section.fail(name, "unknown plugin")
            else:
                # ${VAR} too: a webhook URL or a token often holds a secret.
                plugin = self.interpolated(_Section(self, table, section.key(name)))
                settings[name] = MappingProxyType(self.plugin_table(plugin, known[name]))
        settings.update(self.default_plugin_settings(set(settings)))
        return PluginsConfig(disable=disable, settings=MappingProxyType(settings))

    def default_plugin_settings(self, configured: set[str]) -> dict[str, Mapping[str, Any]]:
        """Defaults for known plugins without a table (only when nothing is required)."""
        defaults: dict[str, Mapping[str, Any]] = {}
        for name, specs in (self.plugin_settings or {}).items():
            if name in configured or any(spec.default is REQUIRED for spec in specs.values()):
                continue
            defaults[name] = MappingProxyType({key: spec.default for key, spec in specs.items()})
        return defaults

    def plugin_table(self, section: _Section, specs: Mapping[str, SettingSpec]) -> dict[str, Any]:
        section.check_keys(tuple(specs))
        values: dict[str, Any] = {}
        for key, spec in specs.items():
            value = section.raw(key)
            if value is _MISSING:
                if spec.default is REQUIRED:
                    raise section.fail(key, "missing required setting")
                values[key] = spec.default
            else:
                values[key] = self.plugin_value(section, key, value, spec)
        return values

    def plugin_value(self, section: _Section, key: str, value: Any, spec: SettingSpec) -> Any:
        types = spec.type if isinstance(spec.type, tuple) else (spec.type,)
        if isinstance(value, bool):
            accepted = bool in types  # bool is an int subclass, but never a number here
        elif isinstance(value, int) and float in types and int not in types:
            return float(value)
        elif isinstance(value, str) and Path in types and str not in types:
            return self.resolve(section, key, value)
        else:
            accepted = isinstance(value, types)
        if not accepted:
            expected = " or ".join(_TYPE_NAMES.get(kind, kind.__name__) for kind in types)
            raise section.fail(key, f"expected {expected}, got {_show(value)}")
        return value


_TYPE_NAMES: Final[Mapping[type, str]] = MappingProxyType(
    {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
        Path: "a path",
    }
)

"""Run Argo CD's Lua health checks the way Argo CD does, without Argo CD.

Argo CD (`util/lua/lua.go`) runs a `resource.customizations.health.<group>_<kind>` script in
gopher-lua, a Lua 5.1, with only the base, table and a safe os library open (no string library),
the live object as the global `obj`, and reads `status` and `message` from the table the script
returns; a status outside Healthy, Progressing, Degraded, Suspended, Missing and Unknown becomes
Unknown. The object is decoded like its `decodeValue`: maps become tables with string keys, lists
1-based arrays (a null item is skipped, as gopher-lua's `Append` skips nil), null nil, numbers Lua
numbers. These helpers do the same with lupa (its Lua 5.1 when it ships one), so unit tests can run
the scripts of manifests/argocd/health.yaml on objects they build and cluster tests on objects read
from the apiserver (`health_of(obj)`).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import yaml

ROOT = Path(__file__).resolve().parents[1]
HEALTH_YAML = ROOT / "manifests" / "argocd" / "health.yaml"
HEALTH_KEY_PREFIX = "resource.customizations.health."
HEALTH_STATUSES = frozenset({"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"})
INSTRUCTION_LIMIT = 10_000_000
"""Argo CD stops a script after 1 s; a script that runs this many VM instructions is stopped too."""

_SANDBOX = """
local real_os = os
local safe_os = {clock = real_os.clock, date = real_os.date, difftime = real_os.difftime, time = real_os.time}
return function(source, obj, limit)
  local env = {
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
    print = print, rawequal = rawequal, rawget = rawget, rawset = rawset, select = select,
    getmetatable = getmetatable, setmetatable = setmetatable, tonumber = tonumber,
    tostring = tostring, type = type, unpack = unpack or table.unpack, xpcall = xpcall,
    table = table, os = safe_os, obj = obj,
  }
  env._G = env
  local chunk, err
  if setfenv then
    chunk, err = loadstring(source, "=health.lua")
    if chunk then setfenv(chunk, env) end
  else
    chunk, err = load(source, "=health.lua", "t", env)
  end
  if not chunk then error(err, 0) end
  debug.setmetatable("", nil)  -- without the string library, strings have no methods
  debug.sethook(function() error("health script ran too long", 2) end, "", limit)
  local ok, result = pcall(chunk)
  debug.sethook()
  if not ok then error(result, 0) end
  return result
end
"""


class Health(NamedTuple):
    status: str
    message: str


def health_scripts(path: Path = HEALTH_YAML) -> dict[str, str]:
    """`<group>_<kind>` → Lua source of every health check in an argocd-cm ConfigMap file."""
    data = yaml.safe_load(path.read_text())["data"]
    return {
        key.removeprefix(HEALTH_KEY_PREFIX): script
        for key, script in data.items()
        if key.startswith(HEALTH_KEY_PREFIX)
    }


def script_key(obj: Mapping[str, Any]) -> str:
    """The ConfigMap key suffix Argo CD looks up for an object: `<group>_<kind>`."""
    group = str(obj["apiVersion"]).rpartition("/")[0]
    return f"{group}_{obj['kind']}" if group else str(obj["kind"])


def _lupa() -> Any:
    try:
        from lupa import lua51  # gopher-lua is a Lua 5.1
    except ImportError:  # a lupa built without it: its default Lua (the sandbox covers both)
        import lupa

        return lupa
    return lua51


def to_lua(lua: Any, value: Any) -> Any:
    """A JSON-shaped Python value as Argo CD hands it to Lua."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        table = lua.table()
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"object keys are strings in JSON, not {key!r}")
            converted = to_lua(lua, item)
            if converted is not None:
                table[key] = converted
        return table
    if isinstance(value, list | tuple):
        table = lua.table()
        index = 0
        for item in value:
            converted = to_lua(lua, item)
            if converted is not None:
                index += 1
                table[index] = converted
        return table
    raise TypeError(f"not a JSON value: {value!r}")


def run_health(script: str, obj: Mapping[str, Any]) -> Health:
    """Run one health script on `obj` in a fresh Lua state; raises LuaError when the script fails."""
    lupa = _lupa()
    lua = lupa.LuaRuntime(register_eval=False, register_builtins=False)
    run = lua.execute(_SANDBOX)
    result = run(script, to_lua(lua, obj), INSTRUCTION_LIMIT)
    if lupa.lua_type(result) != "table":
        raise TypeError(f"expect table output from Lua script, not {lupa.lua_type(result) or result!r}")
    status, message = result["status"], result["message"]
    if not isinstance(status, str | None) or not isinstance(message, str | None):
        raise TypeError(f"status and message must be strings, got {status!r} and {message!r}")
    if status not in HEALTH_STATUSES:  # a missing status too, as in Argo CD
        return Health("Unknown", "Lua returned an invalid health status")
    return Health(status, message or "")


@cache
def _scripts() -> dict[str, str]:
    return health_scripts()


def health_of(obj: Mapping[str, Any]) -> Health:
    """Health of an autoloop object (as the apiserver returns it) by manifests/argocd/health.yaml."""
    return run_health(_scripts()[script_key(obj)], obj)

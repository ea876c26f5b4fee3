"""Parse infra/main.bicep and its modules with pycep-parser and print what a deployment would
create, as JSON: the storage account's settings, the queue, table and container names, the
Function App's app settings and identity, and the role assignments.

    python bicep_model.py INFRA_DIR

Expressions are evaluated as far as the template alone allows: parameters take their values
from main.parameters.json (else their defaults), variables, loops over arrays, string
interpolation, concat(), string(), module outputs. Whatever depends on Azure (resource IDs,
principal IDs, uniqueString, ...) stays symbolic, as "<expr:...>" text. tests/it/infra.rs
compares the result with what the code expects.
"""

import json
import pathlib
import re
import sys

from pycep import BicepParser

INTERPOLATION = re.compile(r"\$\{([^}]*)\}")


_PARSER = []


def parser():
    """One parser for every file: building the grammar is most of the cost."""
    if not _PARSER:
        _PARSER.append(BicepParser())
    return _PARSER[0]


class Sym(str):
    """A value the template alone cannot give: its expression, as text."""


def sym(text):
    return Sym(f"<expr:{text}>")


class File:
    """One evaluated Bicep file: a module instance with its parameter values."""

    def __init__(self, model, path, args):
        self.model = model
        self.path = path
        self.tree = parser().parse(file_path=path)
        self.args = args
        self.cache = {}
        self.modules = {}

    # -- symbols -------------------------------------------------------------------------
    def lookup(self, name, local):
        if name in local:
            return local[name]
        if name in self.cache:
            return self.cache[name]
        tree = self.tree
        if name in tree.get("parameters", {}):
            if name in self.args:
                value = self.args[name]
            elif "default" in tree["parameters"][name]:
                value = self.eval(tree["parameters"][name]["default"], {})
            else:
                value = sym(name)
        elif name in tree.get("variables", {}):
            value = self.eval(tree["variables"][name]["value"], {})
        elif name in tree.get("resources", {}):
            value = ResourceRef(self, name)
        elif name in tree.get("modules", {}):
            value = self.module(name)
        else:
            raise KeyError(name)
        self.cache[name] = value
        return value

    def known(self, name, local):
        tree = self.tree
        return name in local or any(
            name in tree.get(k, {}) for k in ("parameters", "variables", "resources", "modules")
        )

    def module(self, name):
        if name not in self.modules:
            spec = self.tree["modules"][name]
            path = (self.path.parent / spec["detail"]["path"]).resolve()
            params = {
                k: self.eval(v, {}) for k, v in (spec["config"].get("params") or {}).items()
            }
            self.modules[name] = self.model.evaluate(path, params, f"module {name}")
        return ModuleRef(self.modules[name])

    # -- expressions ---------------------------------------------------------------------
    def eval(self, node, local):
        if isinstance(node, str):
            if self.known(node, local):
                return self.lookup(node, local)
            return self.interpolate(node, local)
        if isinstance(node, list):
            return [self.eval(n, local) for n in node]
        if isinstance(node, dict):
            if "operator" in node:
                return self.operator(node["operator"], local)
            if "function" in node:
                return self.function(node["function"], local)
            return {self.key(k, local): self.eval(v, local) for k, v in node.items()}
        return node

    def key(self, k, local):
        if len(k) >= 2 and k[0] == k[-1] == "'":
            return str(self.interpolate(k[1:-1], local))
        return k

    def interpolate(self, text, local):
        def one(m):
            expr = m.group(1).strip()
            head = expr.split(".")[0]
            if self.known(head, local):
                value = self.path_value(expr.split("."), local)
                return str(value)
            return m.group(0)

        return INTERPOLATION.sub(one, text)

    def path_value(self, parts, local):
        value = self.lookup(parts[0], local)
        for part in parts[1:]:
            value = access(value, part)
        return value

    def operator(self, op, local):
        if op["type"] != "property_accessor":
            return sym(op["type"])
        parts = []
        node = op
        while True:
            parts.append(node["operands"]["operand_1"])
            rest = node["operands"]["operand_2"]
            if isinstance(rest, dict) and "operator" in rest:
                node = rest["operator"]
                continue
            parts.append(rest)
            break
        head = parts[0]
        if isinstance(head, str) and self.known(head, local):
            return self.path_value(parts, local)
        return sym(".".join(str(p) for p in parts))

    def function(self, fn, local):
        kind = fn["type"]
        args = {k: self.eval(v, local) for k, v in (fn.get("parameters") or {}).items()}
        if kind == "string":
            value = args["value_to_convert"]
            return value if isinstance(value, Sym) else str(value).lower() if isinstance(value, bool) else str(value)
        if kind == "concat":
            values = [v for v in args.values() if v is not None]
            if all(isinstance(v, list) for v in values):
                return [x for v in values for x in v]
            return "".join(str(v) for v in values)
        if kind == "subscription_resource_id":
            names = [v for k, v in args.items() if k.startswith("resource_name") and v]
            return Sym(f"subscriptionResourceId({args['resource_type']}, {', '.join(map(str, names))})")
        return sym(f"{kind}({', '.join(str(v) for v in args.values() if v is not None)})")

    # -- the file's resources ------------------------------------------------------------
    def resources(self):
        for symbol, res in self.tree.get("resources", {}).items():
            config = res["config"]
            if "loop_type" in config:
                loop = config["loop_type"]
                if loop["type"] != "array":
                    raise SystemExit(f"{self.path}: resource {symbol}: loop {loop['type']} not understood")
                items = self.eval(loop["detail"]["array_name"], {})
                if not isinstance(items, list):
                    raise SystemExit(f"{self.path}: resource {symbol}: cannot evaluate the loop's array")
                for item in items:
                    local = {loop["detail"]["item_name"]: item}
                    yield symbol, res, self.eval(config["config"], local)
            else:
                yield symbol, res, self.eval(config, {})

    def outputs(self):
        return {k: self.eval(v["value"], {}) for k, v in self.tree.get("outputs", {}).items()}


class ResourceRef:
    def __init__(self, file, symbol):
        self.file = file
        self.symbol = symbol

    def config(self):
        res = self.file.tree["resources"][self.symbol]
        return res, res["config"]

    def __str__(self):
        res, config = self.config()
        name = self.file.eval(config.get("name"), {}) if "name" in config else self.symbol
        return f"<resource:{res['type']}:{name}>"


class ModuleRef:
    def __init__(self, file):
        self.file = file


def access(value, part):
    if isinstance(value, dict):
        return value.get(part, sym(part))
    if isinstance(value, ResourceRef):
        res, config = value.config()
        if part == "name" and "name" in config:
            return value.file.eval(config["name"], {})
        name = value.file.eval(config["name"], {}) if "name" in config else value.symbol
        return sym(f"{res['type']}:{name}.{part}")
    if isinstance(value, Sym) and value.startswith("<expr:"):
        return Sym(f"{value[:-1]}.{part}>")
    if isinstance(value, ModuleRef):
        if part == "outputs":
            return value.file.outputs()
        return sym(part)
    return sym(f"{value}.{part}")


class Model:
    def __init__(self):
        self.files = []

    def evaluate(self, path, args, label):
        f = File(self, path, args)
        f.label = label
        self.files.append(f)
        for name in f.tree.get("modules", {}):
            f.module(name)
        return f


def plain(value):
    if isinstance(value, (ResourceRef, ModuleRef)):
        return str(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def main():
    infra = pathlib.Path(sys.argv[1]).resolve()
    parameters = {}
    pfile = infra / "main.parameters.json"
    if pfile.exists():
        parameters = {
            k: v["value"] for k, v in json.loads(pfile.read_text())["parameters"].items()
        }
    model = Model()
    root = model.evaluate(infra / "main.bicep", parameters, "main")
    out = {
        "parameters": parameters,
        "outputs": plain(root.outputs()),
        "files": [],
        "storage_accounts": [],
        "blob_services": [],
        "queues": [],
        "tables": [],
        "containers": [],
        "sites": [],
        "plans": [],
        "role_assignments": [],
    }
    done = set()
    i = 0
    while i < len(model.files):  # modules are evaluated on demand: the list grows
        f = model.files[i]
        i += 1
        resources = list(f.resources())
        rel = str(f.path.relative_to(infra))
        if rel not in done:
            done.add(rel)
            out["files"].append(rel)
        for symbol, res, config in resources:
            kind = res["type"]
            where = f"{rel}: {symbol}"
            if res.get("existing"):
                continue
            if kind == "Microsoft.Storage/storageAccounts":
                out["storage_accounts"].append({"at": where, **plain(config)})
            elif kind == "Microsoft.Storage/storageAccounts/blobServices":
                out["blob_services"].append({"at": where, **plain(config)})
            elif kind == "Microsoft.Storage/storageAccounts/queueServices/queues":
                out["queues"].append(plain(config["name"]))
            elif kind == "Microsoft.Storage/storageAccounts/tableServices/tables":
                out["tables"].append(plain(config["name"]))
            elif kind == "Microsoft.Storage/storageAccounts/blobServices/containers":
                out["containers"].append(plain(config["name"]))
            elif kind == "Microsoft.Web/serverfarms":
                out["plans"].append({"at": where, **plain(config)})
            elif kind == "Microsoft.Web/sites":
                site = plain(config)
                props = site.get("properties", {})
                out["sites"].append(
                    {
                        "at": where,
                        "name": site.get("name"),
                        "kind": site.get("kind"),
                        "identity": site.get("identity"),
                        "site_config": {
                            k: v for k, v in props.get("siteConfig", {}).items() if k != "appSettings"
                        },
                        "app_settings": props.get("siteConfig", {}).get("appSettings", []),
                    }
                )
            elif kind == "Microsoft.Authorization/roleAssignments":
                props = plain(config.get("properties", {}))
                out["role_assignments"].append(
                    {
                        "at": where,
                        "scope": plain(config.get("scope")),
                        "role_definition": props.get("roleDefinitionId"),
                        "principal": props.get("principalId"),
                    }
                )
    json.dump(out, sys.stdout, indent=2, default=str)
    print()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Turns Latchkey's OpenAPI document into docs/api.md.

    target/debug/latchkey openapi | python3 docs/gen_api.py > docs/api.md

Python 3 standard library only. One section per tag (in the document's tag order), one
subsection per operation: method and path, summary, authentication, path parameters, request
body fields, responses. The schemas that requests and responses name follow at the end.
"""

import http
import json
import re
import sys

METHODS = ["get", "post", "put", "patch", "delete"]
TITLES = {"oauth": "OAuth"}


def title(tag):
    return TITLES.get(tag, tag[:1].upper() + tag[1:])


def ref_name(ref):
    return ref.rsplit("/", 1)[-1]


def anchor(name):
    """GitHub's heading anchor for a schema heading such as `PairingStatus`."""
    return "schema-" + re.sub(r"[^a-z0-9-]", "", name.lower())


def link(name):
    return f"[`{name}`](#{anchor(name)})"


def one_line(text):
    return " ".join((text or "").split())


def cell(text):
    return one_line(text).replace("|", "\\|")


def type_of(schema, used):
    """A short, readable type: `string`, `integer`, `DeviceInput` (linked), `array of X`."""
    if not schema:
        return "any"
    if "$ref" in schema:
        name = ref_name(schema["$ref"])
        used.add(name)
        return link(name)
    for key in ("oneOf", "anyOf"):
        if key in schema:
            parts = [type_of(s, used) for s in schema[key]]
            return " or ".join(p for p in parts)
    t = schema.get("type")
    if isinstance(t, list):
        parts = [x for x in t if x != "null"]
        base = type_of({**schema, "type": parts[0] if len(parts) == 1 else parts}, used) if parts else "null"
        return base + (" or null" if "null" in t else "")
    if t == "array":
        return "array of " + type_of(schema.get("items", {}), used)
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if t == "integer" or t == "number":
        return t
    return t or "object"


def nullable(schema):
    t = schema.get("type")
    if isinstance(t, list) and "null" in t:
        return True
    return any(s.get("type") == "null" for s in schema.get("oneOf", []) + schema.get("anyOf", []))


def description_of(schema):
    if schema.get("description"):
        return schema["description"]
    for s in schema.get("oneOf", []) + schema.get("anyOf", []):
        if s.get("description"):
            return s["description"]
    return ""


def resolve(schema, components):
    while schema and "$ref" in schema:
        schema = components.get(ref_name(schema["$ref"]), {})
    return merged(schema, components)


def merged(schema, components):
    """An `allOf` (a flattened struct) as one object: its parts' fields in order."""
    if not schema or "allOf" not in schema:
        return schema
    props, required = {}, []
    for part in schema["allOf"]:
        part = resolve(part, components)
        props.update(part.get("properties", {}))
        required += part.get("required", [])
    out = {k: v for k, v in schema.items() if k != "allOf"}
    out.update({"type": "object", "properties": props, "required": required})
    return out


def ordered_properties(schema):
    """Required fields in the order the code declares them, then the optional ones."""
    props = schema.get("properties", {})
    required = [r for r in schema.get("required", []) if r in props]
    return required + sorted(k for k in props if k not in required)


def field_rows(schema, components, used, prefix="", depth=0):
    """Rows of (field, type, required, description); nested request objects are opened one level."""
    rows = []
    required = set(schema.get("required", []))
    for name in ordered_properties(schema):
        prop = schema["properties"][name]
        req = "yes" if name in required and not nullable(prop) else "no"
        rows.append((prefix + name, type_of(prop, used), req, description_of(prop)))
        inner = None
        for s in [prop] + prop.get("oneOf", []) + prop.get("anyOf", []):
            if "$ref" in s:
                inner = resolve(s, components)
        if inner and inner.get("properties") and depth == 0:
            rows += field_rows(inner, components, used, prefix + name + ".", depth + 1)
    return rows


def table(rows, header):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        out.append("| " + " | ".join(cell(c) if i != 1 else c for i, c in enumerate(r)) + " |")
    return out


def reason(status):
    try:
        return http.HTTPStatus(int(status)).phrase
    except ValueError:
        return ""


def auth_of(op, path, method, spec):
    security = op.get("security", spec.get("security"))
    if not security and path.startswith("/oauth/") and method == "post":
        # The token-style endpoints authenticate the OAuth client in the form, not in the spec.
        return ("OAuth client: `client_id` in the form; a confidential client also sends its secret, "
                "by HTTP Basic or as `client_secret` (never both)")
    if not security:
        return "none"
    names = []
    schemes = spec.get("components", {}).get("securitySchemes", {})
    for req in security:
        for name in req:
            s = schemes.get(name, {})
            if s.get("scheme") == "bearer":
                names.append("`Authorization: Bearer <access token>`")
            else:
                names.append(f"`{name}`")
    return " or ".join(names) if names else "none"


def render_operation(method, path, op, spec, used):
    components = spec.get("components", {}).get("schemas", {})
    out = [f"### `{method.upper()} {path}`", ""]
    text = (op.get("summary") or "").strip()
    if op.get("description"):
        text = (text + "\n\n" + op["description"].strip()).strip()
    if text:
        out += [one_line(p) for p in text.split("\n\n")]
        out.append("")
    out += [f"- **Auth:** {auth_of(op, path, method, spec)}"]
    params = op.get("parameters", [])
    if params:
        ps = ", ".join(f"`{p['name']}` ({p['in']}, {type_of(p.get('schema', {}), used)})" for p in params)
        out.append(f"- **Parameters:** {ps}")
    body = op.get("requestBody")
    if body:
        for ctype, media in body.get("content", {}).items():
            schema = media.get("schema", {})
            target = resolve(schema, components)
            if ctype == "application/x-www-form-urlencoded" or not target.get("properties"):
                what = body.get("description") or type_of(schema, used)
                out.append(f"- **Request body** (`{ctype}`): {one_line(what)}")
            else:
                opt = "" if body.get("required") else ", optional"
                out.append(f"- **Request body** (`{ctype}`{opt}), {type_of(schema, used)}:")
                out.append("")
                out += ["  " + line for line in table(field_rows(target, components, used), ["field", "type", "required", "description"])]
                out.append("")
    out.append("- **Responses:**")
    for status, resp in op.get("responses", {}).items():
        desc = one_line(resp.get("description", "")) or reason(status)
        bodies = [type_of(m.get("schema", {}), used) for m in resp.get("content", {}).values()]
        line = f"  - `{status}` {desc}".rstrip()
        if bodies:
            line += (": " if desc else " ") + ", ".join(bodies)
        out.append(line)
    out.append("")
    return out


def render_schema(name, schema, components, used):
    schema = merged(schema, components)
    out = [f'<a id="{anchor(name)}"></a>', f"### `{name}`", ""]
    if schema.get("description"):
        out += [one_line(schema["description"]), ""]
    if "enum" in schema:
        out += ["One of: " + ", ".join(f"`{v}`" for v in schema["enum"]) + ".", ""]
    elif schema.get("properties"):
        rows = []
        required = set(schema.get("required", []))
        for field in ordered_properties(schema):
            prop = schema["properties"][field]
            req = "yes" if field in required and not nullable(prop) else "no"
            rows.append((field, type_of(prop, used), req, description_of(prop)))
        out += table(rows, ["field", "type", "required", "description"]) + [""]
    else:
        out += [f"Type: {type_of(schema, used)}.", ""]
    return out


def main():
    spec = json.load(sys.stdin)
    info = spec.get("info", {})
    components = spec.get("components", {}).get("schemas", {})
    ops = []
    for path, item in spec.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                ops.append((path, method, item[method]))
    tags = [t["name"] for t in spec.get("tags", [])]
    for _, _, op in ops:
        for t in op.get("tags", ["other"]):
            if t not in tags:
                tags.append(t)

    used = set()
    body = []
    for tag in tags:
        mine = [(p, m, o) for p, m, o in ops if tag in o.get("tags", ["other"])]
        if not mine:
            continue
        body += [f"## {title(tag)}", ""]
        for path, method, op in mine:
            body += render_operation(method, path, op, spec, used)

    # Schemas named anywhere above, and the schemas those name, in name order.
    schema_lines = []
    done = set()
    while used - done:
        for name in sorted(used - done):
            done.add(name)
            if name in components:
                render_schema(name, components[name], components, used)
    for name in sorted(done):
        if name in components:
            schema_lines += render_schema(name, components[name], components, set())

    head = [
        "<!-- Generated: do not edit by hand. -->",
        "",
        f"# {info.get('title', 'API')} HTTP API reference",
        "",
        "This file is generated from the OpenAPI document that the server builds from its handlers' annotations:",
        "",
        "```sh",
        "target/debug/latchkey openapi | python3 docs/gen_api.py > docs/api.md",
        "```",
        "",
        f"{one_line(info.get('description', ''))} Version {info.get('version', '?')}. A running server serves the same",
        "document at `/api/openapi.json` and a browsable page at `/docs`.",
        "",
        "Conventions: `/api` answers errors as RFC 9457 problem documents (`application/problem+json`,",
        "with `errors: [{field, message}]` on 422); `/oauth` answers RFC 6749 errors",
        "(`{\"error\", \"error_description\"}`). Every 429 carries `Retry-After`. Times are RFC 3339 strings",
        "in UTC.",
        "",
        "Contents: " + ", ".join(f"[{title(t)}](#{re.sub(r'[^a-z0-9 -]', '', t.lower()).replace(' ', '-')})"
                                 for t in tags if any(t in o.get("tags", ["other"]) for _, _, o in ops))
        + ", [Schemas](#schemas).",
        "",
    ]
    tail = [
        "## Schemas",
        "",
        "The bodies named above. In a response, *required* means the field is always there; a field",
        "typed `… or null` may be `null`.",
        "",
    ] + schema_lines
    text = "\n".join(head + body + tail).rstrip() + "\n"
    sys.stdout.write(text)


if __name__ == "__main__":
    main()

"""Config validation against the workflow's JSON schema, with readable messages.

`snakemake.utils.validate` reports only the first error and does not fill defaults declared
inside `$ref`'d section schemas, so the workflow uses this validator (same schema files, same
JSON-schema draft, same referencing registry) instead.

`snakemake --config 'train={"max_steps": 5}'` parses nested values with YAML's base loader, so
they arrive as strings: a string where the schema declares only non-string types is coerced to
that type (integer, number, boolean, null) before validation; one that cannot be keeps the
validator's message. `'null'` for a key that may be a string or null is null.
"""

import copy
import functools
from pathlib import Path

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

# The workflow's schemas: the one source of every config default, for the rules and the library alike.
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "workflow" / "schemas"


class ConfigError(ValueError):
    """A config value that the schema does not allow."""


def _with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, subschema in properties.items():
                if "$ref" in subschema:
                    subschema = validator._resolver.lookup(subschema["$ref"]).contents
                if "default" in subschema:
                    instance.setdefault(key, _copy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _copy(value):
    return yaml.safe_load(yaml.safe_dump(value))


def _coerce(text: str, types: list[str]):
    """`text` as the first of the declared `types` it spells, else the text itself."""
    word = text.strip().lower()
    if "null" in types and word in ("null", "none", "~"):
        return None
    if "boolean" in types and word in ("true", "false"):
        return word == "true"
    for kind, parse in (("integer", int), ("number", float)):
        if kind in types:
            try:
                return parse(word)
            except ValueError:
                pass
    return text


def _coerce_strings(errors: list[jsonschema.ValidationError], config: dict) -> bool:
    """Replace each refused string by the value it spells in a non-string type its schema declares
    (a `'null'` refused by a pattern becomes None); whether any changed."""
    changed = False
    for error in errors:
        declared = error.schema.get("type") if isinstance(error.schema, dict) else None
        if not isinstance(error.instance, str) or not error.absolute_path or not declared:
            continue
        value = _coerce(error.instance, [declared] if isinstance(declared, str) else list(declared))
        if value is not error.instance:
            *parents, last = error.absolute_path
            container = config
            for key in parents:
                container = container[key]
            container[last] = value
            changed = True
    return changed


def _describe(error: jsonschema.ValidationError) -> str:
    key = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    allowed = ""
    if error.validator == "enum":
        allowed = f"; allowed values: {', '.join(repr(v) for v in error.validator_value)}"
    elif error.validator == "type":
        allowed = f"; expected type: {error.validator_value}"
    elif error.validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        allowed = f"; {error.validator}: {error.validator_value}"
    elif error.validator == "pattern":
        allowed = f"; {error.schema.get('description', 'see the schema')}"
    elif error.validator == "additionalProperties":
        allowed = f"; allowed keys: {', '.join(sorted(error.schema.get('properties', {})))}"
    return f"config key `{key}`: {error.message}{allowed}"


def load_schema(schema_path: str | Path) -> tuple[dict, Registry]:
    schema_path = Path(schema_path).resolve()

    def retrieve(uri: str) -> Resource:
        section = yaml.safe_load((schema_path.parent / Path(uri).name).read_text())
        # A `$schema` in a section would make jsonschema switch to the stock validator there,
        # which fills no defaults; the top-level file names the draft for all of them.
        section.pop("$schema", None)
        return Resource.from_contents(section, default_specification=DRAFT202012)

    schema = yaml.safe_load(schema_path.read_text())
    schema["$id"] = schema_path.as_uri()
    return schema, Registry(retrieve=retrieve)


def validate_config(config: dict, schema_path: str | Path) -> dict:
    """Fill schema defaults into `config` in place, or raise ConfigError listing every problem by key."""
    schema, registry = load_schema(schema_path)
    filler = _with_defaults(jsonschema.Draft202012Validator)(schema, registry=registry)
    errors = list(filler.iter_errors(config))
    if _coerce_strings(errors, config):
        errors = list(filler.iter_errors(config))
    errors.sort(key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = "\n".join(f"  - {_describe(e)}" for e in errors)
        raise ConfigError(f"Invalid configuration ({len(errors)} problem(s)); fix these keys and rerun:\n{lines}")
    return config


@functools.cache
def _schema_defaults(schema_file: str) -> dict:
    schema, registry = load_schema(SCHEMA_DIR / schema_file)
    config: dict = {}
    for error in _with_defaults(jsonschema.Draft202012Validator)(schema, registry=registry).iter_errors(config):
        if error.validator != "required":  # keys without a default (source) are simply absent
            raise ConfigError(f"{schema_file} rejects its own defaults: {_describe(error)}")
    return config


def schema_defaults(section: str | None = None) -> dict:
    """The config as the workflow fills it in when nothing is set: the top level (seed and every
    section that has a default), or the section `section` ("train", "eval", ...)."""
    defaults = _schema_defaults("config.schema.yaml")
    return copy.deepcopy(defaults if section is None else defaults[section])

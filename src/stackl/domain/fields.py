"""Building blocks of the document models: strict base classes, validated field types, error translation.

Every model of a document, down to a SAT stage or an invocation, is a `DocumentPart`: unknown fields are
rejected (documents.md §2.3), types are strict (``"10"`` is no integer, ``1`` is no boolean), and `null` on an
optional field means "use the default", as the 0.5 clients wrote it. `Document` adds what all ten types share,
declared first so that every canonical body starts with `name`, `type`, `category`, `description`.

The models (configs.py, records.py, invocations.py) declare their fields with the types below, so that a
name, a quantity or a tag value is checked by one function wherever it appears and the error carries the
exact location (``resources.memory``, ``invocation.generic.tool``). Pydantic's own messages ("Input should be
a valid dictionary") are translated here into the short ones of documents.md §2.8 (``unknown field``, ``must
be one of …``); the API prefixes ``body`` to each location. Custom failures are raised as
`PydanticCustomError` with the message passed through the context: name rules contain regex braces
(``{0,127}``) that pydantic would otherwise try to format.
"""

import re
from collections.abc import Callable, Hashable, Iterable
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from stackl.domain import legacy, names, quantities
from stackl.errors import ErrorItem

Loc = tuple[str | int, ...]


# --- base classes ---------------------------------------------------------------------------------------
class DocumentPart(BaseModel):
    """A strict piece of a document: unknown fields rejected; `null` on an optional field is its default."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        optional = [name for name, info in cls.model_fields.items() if not info.is_required()]
        return legacy.drop_nulls(data, optional)


class Document(DocumentPart):
    """Fields every document type has; subclasses declare the rest in the order of their spec table.

    `type` and `category` are filled in by `documents.validate` before a model sees the body (the endpoint
    or the body decides the type; the category is always the canonical one), so the models only carry them.
    """

    doc_type: ClassVar[str]
    category_name: ClassVar[str]

    name: str
    type: str
    category: str
    description: str = ""

    def canonical(self) -> dict[str, Any]:
        """The body as stored and shown in the full view: every field, in declaration order."""
        return self.model_dump()


def failure(error_type: str, message: str) -> PydanticCustomError:
    """A validation failure of `error_type` whose message is `message`, verbatim."""
    return PydanticCustomError(error_type, "{message}", {"message": message})


def failures(title: str, items: Iterable[tuple[Loc, str, str, Any]]) -> ValidationError:
    """One ValidationError holding several failures at locations relative to the value being validated.

    Raised from a validator, pydantic prefixes each location with the field's own, so every problem keeps
    its precise path. `items` are (loc, error type, message, input).
    """
    details = [
        InitErrorDetails(type=failure(error_type, message), loc=loc, input=value)
        for loc, error_type, message, value in items
    ]
    return ValidationError.from_exception_data(title, details)


# --- names --------------------------------------------------------------------------------------------------
def _name_checker(kind: names.NameKind, *, empty_ok: bool) -> Callable[[str], str]:
    def check(value: str) -> str:
        if empty_ok and value == "":
            return value
        message = names.check_name(kind, value)
        if message is not None:
            raise failure("name", message)
        return value

    return check


DocumentName = Annotated[str, AfterValidator(_name_checker(names.NameKind.DOCUMENT, empty_ok=False))]
InfrastructureName = Annotated[
    str, AfterValidator(_name_checker(names.NameKind.INFRASTRUCTURE, empty_ok=False))
]
PolicyTemplateName = Annotated[
    str, AfterValidator(_name_checker(names.NameKind.POLICY_TEMPLATE, empty_ok=False))
]
Alias = Annotated[str, AfterValidator(_name_checker(names.NameKind.ALIAS, empty_ok=False))]
StageName = Annotated[str, AfterValidator(_name_checker(names.NameKind.STAGE, empty_ok=False))]
CloudProvider = Annotated[str, AfterValidator(_name_checker(names.NameKind.CLOUD_PROVIDER, empty_ok=False))]
TargetName = Annotated[str, AfterValidator(_name_checker(names.NameKind.TARGET, empty_ok=False))]
OptionalCloudProvider = Annotated[
    str, AfterValidator(_name_checker(names.NameKind.CLOUD_PROVIDER, empty_ok=True))
]
"""``""`` (inherit) or a cloud-provider key."""
OptionalAgent = Annotated[str, AfterValidator(_name_checker(names.NameKind.AGENT, empty_ok=True))]
"""``""`` (inherit) or an agent name."""


# --- maps and lists -----------------------------------------------------------------------------------------
def _check_quantities(values: dict[str, Any]) -> dict[str, Any]:
    problems = [
        ((key,), "quantity", message, value)
        for key, value in values.items()
        if (message := quantities.check_quantity(key, value)) is not None
    ]
    if problems:
        raise failures("quantities", problems)
    return values


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float)  # bool is an int


def _check_scalars(values: dict[str, Any]) -> dict[str, Any]:
    problems = [
        ((key,), "type", "must be a string, number or boolean", value)
        for key, value in values.items()
        if not _is_scalar(value)
    ]
    if problems:
        raise failures("scalars", problems)
    return values


def _check_unique(values: list[Any]) -> list[Any]:
    seen: set[Hashable] = set()
    problems: list[tuple[Loc, str, str, Any]] = []
    for index, value in enumerate(values):
        key = value if isinstance(value, Hashable) else repr(value)
        if key in seen:
            problems.append(((index,), "duplicate", f"duplicate entry {legacy.scalar_text(value)!r}", value))
        seen.add(key)
    if problems:
        raise failures("unique", problems)
    return values


Quantities = Annotated[dict[str, Any], AfterValidator(_check_quantities)]
"""Resource name → quantity (lifecycle.md §3.2), checked where it is written."""
Scalars = Annotated[dict[str, Any], AfterValidator(_check_scalars)]
"""Name → string, number or boolean (tags; compared as strings)."""
UniqueStrings = Annotated[list[str], AfterValidator(_check_unique)]
UniqueDocumentNames = Annotated[list[DocumentName], AfterValidator(_check_unique)]


# --- error translation --------------------------------------------------------------------------------------
_TYPE_MESSAGES = {
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "bool_type": "must be a boolean",
    "float_type": "must be a number",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "list_type": "must be a list",
}
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")


def _item(error: Any) -> ErrorItem:
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    loc = [part for part in error["loc"] if part != "[key]"]  # a failing dict key is reported at the key
    if "message" in ctx:  # one of ours, raised through failure()
        return {"loc": loc, "msg": str(ctx["message"]), "type": kind}
    if kind == "extra_forbidden":
        return {"loc": loc, "msg": "unknown field", "type": "extra_forbidden"}
    if kind == "missing":
        return {"loc": loc, "msg": "field required", "type": "missing"}
    if kind in _TYPE_MESSAGES:
        message = "must not be null" if error.get("input") is None else _TYPE_MESSAGES[kind]
        return {"loc": loc, "msg": message, "type": "type"}
    if kind == "literal_error":
        choices = _QUOTED.findall(str(ctx.get("expected", "")))
        return {"loc": loc, "msg": f"must be one of {', '.join(choices)}", "type": "enum"}
    if kind == "greater_than_equal":
        return {"loc": loc, "msg": f"must be at least {ctx.get('ge')}", "type": "range"}
    if kind == "less_than_equal":
        return {"loc": loc, "msg": f"must be at most {ctx.get('le')}", "type": "range"}
    if kind == "too_short":
        count = ctx.get("min_length")
        return {
            "loc": loc,
            "msg": f"must have at least {count} entr{'y' if count == 1 else 'ies'}",
            "type": "too_short",
        }
    return {"loc": loc, "msg": str(error.get("msg", "invalid value")), "type": kind}


def translate(exc: ValidationError, prefix: Loc = ()) -> list[ErrorItem]:
    """The errors of `exc` as STACKL error items ``{loc, msg, type}``, each `loc` prefixed with `prefix`."""
    items = []
    for error in exc.errors(include_url=False):
        item = _item(error)
        item["loc"] = [*prefix, *item["loc"]]
        items.append(item)
    return items

"""What real CloudFormation checks of a stack's parameters before it creates anything, and moto does not.

moto accepts any parameter values; CloudFormation refuses a stack whose values break a parameter's constraints
(AllowedPattern, AllowedValues, MinValue/MaxValue, MinLength/MaxLength, a missing value without a default) or one
of the template's Rules (an assertion that fails where its RuleCondition holds). `violations` evaluates both, so
that a deploy test proves its parameters would be accepted, not only that moto took them.
"""

import re


def _values(template, given):
    """Every parameter's value as CloudFormation would see it: the given one, else the default."""
    out = {}
    for name, p in template.get("Parameters", {}).items():
        if name in given:
            out[name] = str(given[name])
        elif "Default" in p:
            out[name] = str(p["Default"])
    return out


def _param_errors(template, values):
    errors = []
    for name, p in template.get("Parameters", {}).items():
        if name not in values:
            errors.append(f"{name}: no value and no default")
            continue
        v, kind = values[name], str(p.get("Type", "String"))
        items = v.split(",") if kind.startswith("List<") or kind == "CommaDelimitedList" else [v]
        for item in items:
            if "AllowedValues" in p and item not in [str(a) for a in p["AllowedValues"]]:
                errors.append(f"{name}: {item!r} is not one of {p['AllowedValues']}")
            if "AllowedPattern" in p and not re.fullmatch(str(p["AllowedPattern"]), item):
                errors.append(f"{name}: {item!r} does not match {p['AllowedPattern']}")
            if "MinLength" in p and len(item) < int(p["MinLength"]):
                errors.append(f"{name}: shorter than {p['MinLength']}")
            if "MaxLength" in p and len(item) > int(p["MaxLength"]):
                errors.append(f"{name}: longer than {p['MaxLength']}")
            if kind == "Number":
                try:
                    n = float(item)
                except ValueError:
                    errors.append(f"{name}: {item!r} is not a number")
                    continue
                if "MinValue" in p and n < float(p["MinValue"]):
                    errors.append(f"{name}: {item} is below {p['MinValue']}")
                if "MaxValue" in p and n > float(p["MaxValue"]):
                    errors.append(f"{name}: {item} is above {p['MaxValue']}")
    return errors


def _eval(expr, values):
    """A rule function (the subset CloudFormation allows in Rules); anything else fails loudly."""
    if isinstance(expr, (str, int, float, bool)):
        return str(expr) if not isinstance(expr, bool) else expr
    if isinstance(expr, list):
        return [_eval(e, values) for e in expr]
    if not isinstance(expr, dict) or len(expr) != 1:
        raise ValueError(f"not a rule function: {expr!r}")
    ((fn, arg),) = expr.items()
    if fn == "Ref":
        if arg not in values:
            raise ValueError(f"rule names unknown parameter {arg}")
        return values[arg]
    if fn == "Fn::Equals":
        a, b = (_eval(x, values) for x in arg)
        return a == b
    if fn == "Fn::Not":
        (a,) = arg
        return not _eval(a, values)
    if fn == "Fn::And":
        return all(_eval(a, values) for a in arg)
    if fn == "Fn::Or":
        return any(_eval(a, values) for a in arg)
    if fn == "Fn::Contains":
        haystack, needle = _eval(arg[0], values), _eval(arg[1], values)
        return needle in haystack
    if fn == "Fn::EachMemberEquals":
        members, value = _eval(arg[0], values), _eval(arg[1], values)
        return all(m == value for m in (members.split(",") if isinstance(members, str) else members))
    if fn == "Fn::EachMemberIn":
        members, allowed = _eval(arg[0], values), _eval(arg[1], values)
        return all(m in allowed for m in (members.split(",") if isinstance(members, str) else members))
    raise ValueError(f"rule function {fn} is not evaluated by this test")


def violations(template, given):
    """Why CloudFormation would refuse `given` (parameter name -> value) for `template`; empty if it would not."""
    values = _values(template, given)
    errors = _param_errors(template, values)
    for name, rule in template.get("Rules", {}).items():
        if "RuleCondition" in rule and not _eval(rule["RuleCondition"], values):
            continue
        for a in rule["Assertions"]:
            if not _eval(a["Assert"], values):
                errors.append(f"rule {name}: {a.get('AssertDescription', 'assertion failed')}")
    return errors

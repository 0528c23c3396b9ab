"""Read strings out of a synthesized CloudFormation template, for checks that run without AWS.

CDK writes a state machine's ``DefinitionString`` (and an image's URI) as ``Fn::Join`` over strings
and ``Ref``/``Fn::GetAtt``/``Fn::Sub`` tokens. ``resolve`` replaces the tokens with well-formed
placeholders (pseudo parameters by example values, ``.Arn`` attributes by ARN-shaped strings), so a
definition parses as JSON and passes an ARN-checking validator. Used by the CDK tests
(``tests/cdk/definitions.py``) and by ``make images`` (``tools/image_check.py``).
"""

from __future__ import annotations

from typing import Any, Final

PARTITION: Final = "aws"
REGION: Final = "us-east-1"
ACCOUNT: Final = "123456789012"
PSEUDO: Final = {
    "AWS::Partition": PARTITION,
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::URLSuffix": "amazonaws.com",
}


def resolve(value: Any) -> str:
    """The string a token stands for, with placeholders; ``ValueError`` on a token it does not know."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(resolve(part) for part in parts)
    if "Ref" in value:
        return PSEUDO.get(value["Ref"], f"ref-{value['Ref']}")
    if "Fn::GetAtt" in value:
        logical_id, attribute = value["Fn::GetAtt"]
        if attribute == "Arn":
            return f"arn:{PARTITION}:service:{REGION}:{ACCOUNT}:resource/{logical_id}"
        return f"{logical_id}-{attribute}"
    if "Fn::Sub" in value:
        text = value["Fn::Sub"]
        for name, example in PSEUDO.items():
            text = text.replace("${" + name + "}", example)
        return str(text)
    raise ValueError(f"unexpected token in a template string: {value}")

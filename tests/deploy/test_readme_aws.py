"""README "Deploy on AWS" names only parameters and outputs the templates really have."""

from __future__ import annotations

import re

from tests.deploy.cfn import TEMPLATES
from tests.deploy.test_templates import load
from tests.integration.stack import REPO

SECTION = (
    (REPO / "README.md").read_text(encoding="utf-8").split("\n## Deploy on AWS\n", 1)[1].split("\n## ", 1)[0]
)


def test_every_parameter_override_is_a_template_parameter() -> None:
    commands = re.findall(
        r"--template-file deploy/aws/(\S+).*?--parameter-overrides (.*?)(?:\n\s*NEXT=|\n\S|$)", SECTION, re.S
    )
    assert {name for name, _ in commands} == {p.name for p in TEMPLATES.glob("*.yaml")}
    for name, overrides in commands:
        given = set(re.findall(r"(\w+)=", overrides))
        assert given and given <= set(load(name)["Parameters"]), (name, given)


def test_every_output_read_is_an_output_of_that_stack() -> None:
    reads = set(re.findall(r"\$\(out (\S+) (\w+)\)", SECTION))
    assert reads
    outputs = {
        "pipeline.yaml": set(load("pipeline.yaml")["Outputs"]),
        "step.yaml": set(load("step.yaml")["Outputs"]),
    }
    for stack, key in reads:
        template = "pipeline.yaml" if stack == "faces" else "step.yaml"
        assert key in outputs[template], (stack, key)


def test_the_helm_values_set_exist_in_the_chart() -> None:
    values = (REPO / "helm" / "worker-chart" / "values.yaml").read_text(encoding="utf-8")
    for key in re.findall(r"--set ([\w.]+)=", SECTION):
        top = key.split(".")[0]
        assert re.search(rf"^{top}:", values, re.M), key

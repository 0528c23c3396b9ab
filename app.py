"""CDK app: ``npx cdk synth|deploy|destroy`` (or ``python app.py``) with the settings in cdk.json."""

from aws_cdk import App

from stacks.driftloop_stack import build, cdk_json_context


def main() -> None:
    app = App(context=cdk_json_context())
    build(app)
    app.synth()


if __name__ == "__main__":
    main()

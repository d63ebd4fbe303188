"""The operator's commands (``crmsync …``): each works on a deployed stack, found by
its name through its CloudFormation outputs with the user's AWS profile, and on a
running ``crmsync up`` (``--local``), which registers the same outputs in moto."""

"""The secret store adapter (AWS Secrets Manager)."""

"""Reports over run directories (plots)."""

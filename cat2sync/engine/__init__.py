"""The sync engine: local scans, upload decisions and transfers, mirror passes."""

"""Fault injection: crashes, outages, broken disks and hostile input (``-m faults``)."""

"""wabot load benchmarks: ``python -m bench --quick|--full [--only NAME]``."""

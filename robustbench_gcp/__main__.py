from robustbench_gcp.cli import program

program()

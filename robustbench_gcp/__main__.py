from robustbench_gcp.cli import main

main()

"""Reports out: the Report type, reports from stored cells, comparisons, tables and plots."""

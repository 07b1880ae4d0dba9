"""Images in: folders, datasets, the loader, released arrays and videos, the demo data."""

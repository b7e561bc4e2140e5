"""The only package that imports Qt, napari or VTK's Qt view."""

"""The pages of a job, shown as tabs on the job's side of the main window.

Each entry is "module:Class"; the class derives from
:class:`app.gui.pages.base.JobPage`. Pages are created once, when the window
opens, and told which job is selected with ``set_job``.
"""

PAGES: list[str] = [
    "app.gui.pages.overview:OverviewPage",
    "app.gui.pages.annotate:AnnotatePage",
    "app.gui.pages.models:ModelsPage",
    "app.gui.pages.view3d:View3DPage",
]

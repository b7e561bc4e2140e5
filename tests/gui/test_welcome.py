"""The welcome on first launch: shown for an empty workspace, two buttons, two lines on the flow."""

from __future__ import annotations

from PySide6.QtCore import Qt

from app.gui.welcome import FLOW_LINES, WelcomePanel, wants_welcome


def test_welcome_only_for_an_empty_workspace(store):
    assert wants_welcome(store)
    store.create_job("Trilobite")
    assert not wants_welcome(store)


def test_buttons_ask_for_the_sample_and_a_new_job(qtbot):
    panel = WelcomePanel()
    qtbot.addWidget(panel)
    panel.resize(900, 600)
    panel.show()
    qtbot.waitExposed(panel)
    assert panel.sample_button.text() == "Open sample"
    assert panel.new_button.text().startswith("New job")
    assert panel.flow.text().count("\n") == 1 and len(FLOW_LINES) == 2
    with qtbot.waitSignal(panel.open_sample_requested):
        qtbot.mouseClick(panel.sample_button, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(panel.new_job_requested):
        qtbot.mouseClick(panel.new_button, Qt.MouseButton.LeftButton)
    assert panel.sample_button.isVisible() and panel.new_button.isVisible()

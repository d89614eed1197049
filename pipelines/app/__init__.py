"""The application shell: the `complaints` command line, the web page, the demos, reports and emulator helpers.

Runs on the machine that launches jobs, never on workers: nothing under
`pipelines/` outside this package imports it, so a Dataflow worker unpickling a job
never loads click, Gradio or the demos (tests/test_house.py checks this).
"""

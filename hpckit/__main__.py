from hpckit.cli import app

app(prog_name="hpckit")

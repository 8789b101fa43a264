from bridge._cli import main

main(prog_name="flask2fastapi")

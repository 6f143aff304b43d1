# Runs the program at _p as __main__, the way the board runs main.py after a reset.
# Sent as top-level statements after "_p = PATH" (never as a function: a traceback then
# starts at the user's own file). Firmware without compile() execs the text directly.
_f = open(_p)
_s = _f.read()
_f.close()
try:
    _s = compile(_s, _p, 'exec')
except NameError:
    pass
exec(_s, {'__name__': '__main__'})

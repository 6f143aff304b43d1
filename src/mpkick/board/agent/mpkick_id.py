# The id mpkick keeps at /.mpkick/id, made on first use: prints it. Sent as top-level
# statements after "_n = FRESH" (the id to keep when there is none yet).
try:
    _f = open('/.mpkick/id')
    print(_f.read().strip())
    _f.close()
except OSError:
    import os
    try:
        os.mkdir('/.mpkick')
    except OSError:
        pass
    _f = open('/.mpkick/id', 'w')
    _f.write(_n)
    _f.close()
    print(_n)

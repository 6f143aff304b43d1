# The virtual board's machine module (unique id, battery-backed RTC): firmware.py runs this
# at boot.


def _machine(clock_path, serial):
    # A board's machine module has a real-time clock and a unique_id(); the unix port's has
    # neither. The clock is battery-backed: the time once set lives in IMAGE.rtc beside the flash
    # (opened now, while the host's files are still there). Never set, it starts at 2000-01-01
    # at power-on, as a board's does. unique_id() is the serial= option of the sim:// URL.
    import binascii
    import machine
    import time

    try:
        clock = open(clock_path, "r+b")
    except OSError:
        clock = open(clock_path, "w+b")
    saved = clock.read().strip()
    state = [float(saved) if saved else time.mktime((2000, 1, 1, 0, 0, 0, 0, 0)) - time.time()]

    class RTC:
        def __init__(self, *args):
            pass

        def datetime(self, when=None):
            if when is None:
                t = time.time() + state[0]
                y, mo, d, h, mi, s, wd = time.localtime(int(t))[:7]
                return (y, mo, d, wd, h, mi, s, int((t - int(t)) * 1000000))
            y, mo, d, wd, h, mi, s = (tuple(when) + (0,) * 8)[:7]
            state[0] = time.mktime((y, mo, d, h, mi, s, 0, 0)) - time.time()
            clock.seek(0)
            clock.write(b"%.6f        " % state[0])

        def init(self, when):
            self.datetime(when)

    m = _module_like(machine, RTC=RTC, __name__="machine")  # noqa: F821 (given by firmware._part)
    if serial:
        uid = binascii.unhexlify(serial)
        m.unique_id = lambda: uid
    return m

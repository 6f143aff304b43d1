# The demo project `make demo` pushes to the virtual board and runs.
import sys

from greet import banner, shout

print(banner("mpkick demo"))
print("running", sys.implementation.name, ".".join(str(n) for n in sys.implementation.version))
with open("data/quotes.txt") as f:
    for line in f:
        print(shout(line.strip()))
print("done: edit a file and push again; only the change travels")

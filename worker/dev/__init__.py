"""The local rig: the Akool simulator, a local stack of real processes, and `lipsync demo`.

Used by the demo, the tests, the benchmarks and `make stack`; the product's own modules never
import it (only the CLI's `demo` command does).
"""

"""The demo: the demo shop (``load_demo``) and the traffic simulator (``simulate_traffic``), on
the top floor: they drive every app through its services, as a merchant would; nothing
imports them."""

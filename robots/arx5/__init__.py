"""ARX5 (X5 / R5 family) arm over CAN: MIT-mode motor protocol, motor layouts, driver.

Importing this package does not import python-can; `driver.make_robot` does.
"""

"""Handlers for servers.d/calculator.yaml: `handler(arguments, context)`."""

import asyncio


async def calculate(arguments, context):
    a, b, operation = arguments["a"], arguments["b"], arguments["operation"]
    if operation == "add":
        result = a + b
    elif operation == "subtract":
        result = a - b
    elif operation == "multiply":
        result = a * b
    elif b == 0:
        raise ValueError("division by zero")
    else:
        result = a / b
    return {"result": result}


async def sum_slowly(arguments, context):
    numbers = arguments["numbers"]
    delay = arguments.get("delay", 0.1)
    total = 0
    for step, number in enumerate(numbers, start=1):
        total += number
        await context.progress(step, len(numbers), f"added {number}")
        await context.log("info", f"running total {total}")
        await asyncio.sleep(delay)
    return f"The sum is {total}"

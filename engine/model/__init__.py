"""The models: Order Desk's order, typed store settings, the event, action and job catalogues, the core events."""

-- Every committed status change is announced on the `order_status` channel. NOTIFY is
-- delivered at commit, so listeners never see a change that rolled back; every order
-- service instance listens, so a GraphQL subscription follows an order wherever the
-- change was made.
CREATE FUNCTION notify_order_status() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
        PERFORM pg_notify(
            'order_status',
            json_build_object('id', NEW.id, 'status', NEW.status)::text
        );
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER orders_status_notify
    AFTER INSERT OR UPDATE OF status ON orders
    FOR EACH ROW EXECUTE FUNCTION notify_order_status();

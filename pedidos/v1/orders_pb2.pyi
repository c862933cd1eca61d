import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PaymentGateway(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYMENT_GATEWAY_UNSPECIFIED: _ClassVar[PaymentGateway]
    PAYMENT_GATEWAY_MERCADO_PAGO: _ClassVar[PaymentGateway]
    PAYMENT_GATEWAY_PAYPAL: _ClassVar[PaymentGateway]
    PAYMENT_GATEWAY_STRIPE: _ClassVar[PaymentGateway]
    PAYMENT_GATEWAY_BANK_TRANSFER: _ClassVar[PaymentGateway]

class CardBrand(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CARD_BRAND_UNSPECIFIED: _ClassVar[CardBrand]
    CARD_BRAND_VISA: _ClassVar[CardBrand]
    CARD_BRAND_MASTERCARD: _ClassVar[CardBrand]
    CARD_BRAND_AMERICAN_EXPRESS: _ClassVar[CardBrand]
    CARD_BRAND_DISCOVER: _ClassVar[CardBrand]

class OrderState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_STATE_UNSPECIFIED: _ClassVar[OrderState]
    ORDER_STATE_PROCESANDO: _ClassVar[OrderState]
    ORDER_STATE_PREPARACION: _ClassVar[OrderState]
    ORDER_STATE_ENVIADO: _ClassVar[OrderState]
    ORDER_STATE_ENTREGADO: _ClassVar[OrderState]
    ORDER_STATE_FINALIZADO: _ClassVar[OrderState]
PAYMENT_GATEWAY_UNSPECIFIED: PaymentGateway
PAYMENT_GATEWAY_MERCADO_PAGO: PaymentGateway
PAYMENT_GATEWAY_PAYPAL: PaymentGateway
PAYMENT_GATEWAY_STRIPE: PaymentGateway
PAYMENT_GATEWAY_BANK_TRANSFER: PaymentGateway
CARD_BRAND_UNSPECIFIED: CardBrand
CARD_BRAND_VISA: CardBrand
CARD_BRAND_MASTERCARD: CardBrand
CARD_BRAND_AMERICAN_EXPRESS: CardBrand
CARD_BRAND_DISCOVER: CardBrand
ORDER_STATE_UNSPECIFIED: OrderState
ORDER_STATE_PROCESANDO: OrderState
ORDER_STATE_PREPARACION: OrderState
ORDER_STATE_ENVIADO: OrderState
ORDER_STATE_ENTREGADO: OrderState
ORDER_STATE_FINALIZADO: OrderState

class Money(_message.Message):
    __slots__ = ("currency_code", "amount_minor")
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    currency_code: str
    amount_minor: int
    def __init__(self, currency_code: _Optional[str] = ..., amount_minor: _Optional[int] = ...) -> None: ...

class OrderDetails(_message.Message):
    __slots__ = ("product_name", "price", "payment_gateway", "card_brand", "bank", "shipping_region", "shipping_address", "customer_email")
    PRODUCT_NAME_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_GATEWAY_FIELD_NUMBER: _ClassVar[int]
    CARD_BRAND_FIELD_NUMBER: _ClassVar[int]
    BANK_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_REGION_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_EMAIL_FIELD_NUMBER: _ClassVar[int]
    product_name: str
    price: Money
    payment_gateway: PaymentGateway
    card_brand: CardBrand
    bank: str
    shipping_region: str
    shipping_address: str
    customer_email: str
    def __init__(self, product_name: _Optional[str] = ..., price: _Optional[_Union[Money, _Mapping]] = ..., payment_gateway: _Optional[_Union[PaymentGateway, str]] = ..., card_brand: _Optional[_Union[CardBrand, str]] = ..., bank: _Optional[str] = ..., shipping_region: _Optional[str] = ..., shipping_address: _Optional[str] = ..., customer_email: _Optional[str] = ...) -> None: ...

class CreateOrderRequest(_message.Message):
    __slots__ = ("order", "idempotency_key")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    order: OrderDetails
    idempotency_key: str
    def __init__(self, order: _Optional[_Union[OrderDetails, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class CreateOrderResponse(_message.Message):
    __slots__ = ("order_id", "state", "accepted_at")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_AT_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    state: OrderState
    accepted_at: _timestamp_pb2.Timestamp
    def __init__(self, order_id: _Optional[str] = ..., state: _Optional[_Union[OrderState, str]] = ..., accepted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateOrderResult(_message.Message):
    __slots__ = ("index", "accepted", "error")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    index: int
    accepted: CreateOrderResponse
    error: OrderError
    def __init__(self, index: _Optional[int] = ..., accepted: _Optional[_Union[CreateOrderResponse, _Mapping]] = ..., error: _Optional[_Union[OrderError, _Mapping]] = ...) -> None: ...

class OrderError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class CreateOrderBatchRequest(_message.Message):
    __slots__ = ("orders",)
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[CreateOrderRequest]
    def __init__(self, orders: _Optional[_Iterable[_Union[CreateOrderRequest, _Mapping]]] = ...) -> None: ...

class CreateOrderBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CreateOrderResult]
    def __init__(self, results: _Optional[_Iterable[_Union[CreateOrderResult, _Mapping]]] = ...) -> None: ...

class GetOrderRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class WatchOrderRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class ReachedState(_message.Message):
    __slots__ = ("state", "reached_at")
    STATE_FIELD_NUMBER: _ClassVar[int]
    REACHED_AT_FIELD_NUMBER: _ClassVar[int]
    state: OrderState
    reached_at: _timestamp_pb2.Timestamp
    def __init__(self, state: _Optional[_Union[OrderState, str]] = ..., reached_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Order(_message.Message):
    __slots__ = ("order_id", "state", "accepted_at", "reached", "details", "trace_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_AT_FIELD_NUMBER: _ClassVar[int]
    REACHED_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    state: OrderState
    accepted_at: _timestamp_pb2.Timestamp
    reached: _containers.RepeatedCompositeFieldContainer[ReachedState]
    details: OrderDetails
    trace_id: str
    def __init__(self, order_id: _Optional[str] = ..., state: _Optional[_Union[OrderState, str]] = ..., accepted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reached: _Optional[_Iterable[_Union[ReachedState, _Mapping]]] = ..., details: _Optional[_Union[OrderDetails, _Mapping]] = ..., trace_id: _Optional[str] = ...) -> None: ...

class OrderStateChange(_message.Message):
    __slots__ = ("order_id", "state", "reached_at")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REACHED_AT_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    state: OrderState
    reached_at: _timestamp_pb2.Timestamp
    def __init__(self, order_id: _Optional[str] = ..., state: _Optional[_Union[OrderState, str]] = ..., reached_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
